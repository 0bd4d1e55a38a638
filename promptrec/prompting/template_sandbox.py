"""The sandbox user templates render in: no attribute escapes (Jinja's immutable sandbox) and a budget.

A template is code someone else may have written. Jinja's sandbox already blocks unsafe attributes and
mutation; this adds limits on what one render may cost: the output length, and the wall time. Both are
checked whenever the template yields output and at every function call, attribute or item lookup and
`*` / `**` operation it makes, and `*` / `**` are refused outright when their result would be too big
(`"x" * 10**9` never allocates). Exceeding a limit, or any sandbox violation, is a TemplateError.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptrec.errors import TemplateError


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int = 200_000  # far beyond any prompt a model context holds
    max_seconds: float = 2.0


@dataclass
class _Budget:
    limits: RenderLimits
    deadline: float
    template: str

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"template {self.template!r} rendered for more than {self.limits.max_seconds:g} s; "
                "remove the loop or recursion that makes it slow"
            )

    def check_size(self, size: int) -> None:
        if size > self.limits.max_chars:
            raise TemplateError(
                f"template {self.template!r} produced more than {self.limits.max_chars} characters; "
                "a prompt cannot be that long"
            )


_budget: ContextVar[_Budget | None] = ContextVar("promptrec_render_budget", default=None)


@contextmanager
def render_budget(template: str, limits: RenderLimits) -> Iterator[_Budget]:
    budget = _Budget(limits, time.monotonic() + limits.max_seconds, template)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def limited_join(chunks: Iterable[str], budget: _Budget) -> str:
    """Join rendered chunks, stopping as soon as the output or the time budget is exceeded."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        budget.check_size(size)
        budget.check_time()
        parts.append(chunk)
    return "".join(parts)


def _check_time() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.check_time()


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus the render budget (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        budget = _budget.get()
        limit = budget.limits.max_chars if budget else RenderLimits().max_chars
        if operator == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(count, int) and hasattr(sized, "__len__") and len(sized) * count > limit:
                raise TemplateError(f"a template multiplied a sequence beyond {limit} elements")
        elif operator == "**" and isinstance(right, int | float) and abs(right) > 1000:
            raise TemplateError("a template raised a number to a power beyond 1000")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        return super().call(context, obj, *args, **kwargs)

    # Lookups also check the size of what they return, so a value grown in a loop without any output
    # (`{% set ns.s = ns.s ~ ns.s %}`) is stopped before it can exhaust memory.
    def getattr(self, obj: Any, attribute: str) -> Any:
        return _checked(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _checked(super().getitem(obj, argument))


def _checked(value: Any) -> Any:
    budget = _budget.get()
    if budget is not None:
        budget.check_time()
        if isinstance(value, str | list | tuple | dict):
            budget.check_size(len(value))
    return value
