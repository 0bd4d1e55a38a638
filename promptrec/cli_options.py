"""Command-line options shared by `promptrec rank`, `demo` and `eval`.

The LLM options are not written out per command: `with_llm_options` adds one option per `LLMOptions`
field (promptrec/options.py, the definition the recommender factory and the evaluation's RunConfig also
use) to a command's signature, with the field's description as help, and hands the command one validated
`llm: LLMOptions`. A new field there is a new option everywhere.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from promptrec.errors import RequestError
from promptrec.options import LLMOptions

F = TypeVar("F", bound=Callable[..., Any])


def llm_options(**values: Any) -> LLMOptions:
    """LLMOptions from CLI values, or a RequestError naming the option and its allowed values."""
    try:
        return LLMOptions(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}" for problem in error.errors()
        )
        raise RequestError(f"invalid options: {problems}") from error


def _cli_type(annotation: Any) -> Any:
    """Literal choices are passed as text (LLMOptions validates them and names the allowed values)."""
    if typing.get_origin(annotation) is typing.Literal:
        return str
    arguments = typing.get_args(annotation)
    if any(typing.get_origin(argument) is typing.Literal for argument in arguments):
        return str | None if type(None) in arguments else str
    return annotation


def with_llm_options(omit: tuple[str, ...] = (), **defaults: Any) -> Callable[[F], F]:
    """Give a command every LLMOptions field but `omit` as an option (`defaults` overrides a field's default
    for this command) and call it with `llm=LLMOptions(...)` instead of the separate values."""

    def decorate(command: F) -> F:
        fields = {name: field for name, field in LLMOptions.model_fields.items() if name not in omit}
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults.get(name, field.default),
                annotation=Annotated[_cli_type(field.annotation), typer.Option(help=field.description)],
            )
            for name, field in fields.items()
        ]
        signature = inspect.signature(command, eval_str=True)
        own = [parameter for parameter in signature.parameters.values() if parameter.name != "llm"]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in fields}
            return command(*args, llm=llm_options(**values), **kwargs)

        parameters = [*own, *added]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        # Typer reads the new signature and evaluated annotations, not the wrapped function's.
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        del wrapper.__wrapped__
        return wrapper  # type: ignore[return-value]

    return decorate
