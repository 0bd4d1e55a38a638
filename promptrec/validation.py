"""Turn raw JSON into a RankRequest, or into a RequestError that names the field and the fix.

`parse_request` is the one public validating entry point: bytes, text, a dict or a RankRequest go in; a
RankRequest within `RequestLimits` comes out, or a RequestError, never a raw pydantic, Unicode or
recursion error. The limits bound the work a single request can cause (size, nesting, candidates).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from promptrec.errors import RequestError
from promptrec.models import RankMode, RankRequest


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask for. Pointwise mode costs one prompt per candidate, hence its own cap."""

    max_bytes: int = 2_000_000
    max_depth: int = 32
    max_history: int = 10_000
    max_candidates: Mapping[RankMode, int] = field(
        default_factory=lambda: {RankMode.GENERATE: 100, RankMode.SCORE: 100, RankMode.POINTWISE: 100}
    )


DEFAULT_LIMITS = RequestLimits()


def _field_names(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Valid field names at the parent of `location`, for 'did you mean' hints."""
    current: Any = model
    for part in location[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        current = next((arg for arg in inner or (annotation,) if isinstance(arg, type)), annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def describe_validation_error(error: ValidationError, model: type[BaseModel], root: str = "request") -> str:
    lines = []
    for problem in error.errors():
        location = tuple(problem["loc"])
        path = ".".join([root, *(f"[{part}]" if isinstance(part, int) else str(part) for part in location)])
        path = path.replace(".[", "[")
        message = problem["msg"]
        if problem["type"] == "extra_forbidden" and location:
            close = difflib.get_close_matches(str(location[-1]), _field_names(model, location), n=1)
            message = f"unknown field{f'; did you mean {close[0]!r}?' if close else ''}"
        lines.append(f"{path}: {message}")
    return "invalid request:\n  " + "\n  ".join(lines)


def parse_request(
    data: RankRequest | dict[str, Any] | str | bytes, limits: RequestLimits = DEFAULT_LIMITS
) -> RankRequest:
    """Accept a RankRequest, a dict, JSON text or UTF-8 JSON bytes; RequestError on anything invalid."""
    if isinstance(data, bytes | bytearray):
        _check_size(len(data), limits)
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError(
                f"request is not valid UTF-8 (byte {error.start}: {error.reason}); save it as UTF-8 JSON"
            ) from None
    if isinstance(data, str):
        _check_size(len(data.encode("utf-8", "surrogatepass")), limits)
        try:
            data = json.loads(data)
        except json.JSONDecodeError as error:
            raise RequestError(
                f"request is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
            ) from None
        except RecursionError:
            raise RequestError(f"request: JSON nested deeper than {limits.max_depth} levels") from None
    if not isinstance(data, RankRequest):
        _check_structure(data, limits.max_depth)
        try:
            data = RankRequest.model_validate(data)
        except ValidationError as error:
            raise RequestError(describe_validation_error(error, RankRequest)) from None
    _check_counts(data, limits)
    return data


def _check_size(size: int, limits: RequestLimits) -> None:
    if size > limits.max_bytes:
        raise RequestError(
            f"request: {size} bytes is more than the limit of {limits.max_bytes}; send fewer candidates or "
            "a shorter history (or raise RequestLimits.max_bytes)"
        )


def _check_structure(data: Any, max_depth: int) -> None:
    """Nesting depth and encodable text; iterative, so a hostile document cannot exhaust the stack here."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(
                    f"request: text {value[:40]!r} holds an unpaired surrogate (\\ud800-\\udfff); "
                    "send valid Unicode"
                ) from None
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise RequestError(f"request: JSON nested deeper than {max_depth} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def _check_counts(request: RankRequest, limits: RequestLimits) -> None:
    most = limits.max_candidates.get(request.mode)
    if most is not None and len(request.candidates) > most:
        raise RequestError(
            f"request.candidates: {len(request.candidates)} candidates, but {request.mode.value} mode takes "
            f"at most {most}; pre-filter with a retriever, or raise RequestLimits.max_candidates"
        )
    if len(request.user.history) > limits.max_history:
        raise RequestError(
            f"request.user.history: {len(request.user.history)} events, more than the limit of "
            f"{limits.max_history}; send the newest ones (at most {limits.max_history})"
        )
