"""Turn raw JSON into a RankRequest, or into a RequestError that names the field and the fix."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from promptrec.errors import RequestError
from promptrec.models import RankRequest


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


def parse_request(data: RankRequest | dict[str, Any] | str) -> RankRequest:
    """Accept a RankRequest, a dict, or JSON text."""
    if isinstance(data, RankRequest):
        return data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as error:
            raise RequestError(
                f"request is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
            ) from error
    try:
        return RankRequest.model_validate(data)
    except ValidationError as error:
        raise RequestError(describe_validation_error(error, RankRequest)) from error
