"""The parts of the OpenAI-compatible wire protocol the server backend reads, as strict typed models.

A server may be broken or hostile: every answer is validated here, with strict types (a log-probability
sent as a string, an index sent as a float or a missing `text` is an error, not a guess), and a malformed
answer becomes a BackendError that names the field at fault. Unknown fields are ignored: servers add
fields freely. Non-finite floats (NaN, +-Infinity) are accepted here and handled by the ranking stage,
which never lets them reach JSON output.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptrec.errors import BackendError

TOKEN_ID_PREFIX = "token_id:"


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class ModelCard(WireModel):
    id: str
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = Field(default=None, ge=1)


class ModelList(WireModel):
    data: list[ModelCard]


class ChoiceLogprobs(WireModel):
    # One mapping per generated position: token (text or "token_id:N") -> log-probability.
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(WireModel):
    index: int = Field(ge=0)
    text: str
    token_ids: list[int] | None = None
    prompt_token_ids: list[int] | None = None
    logprobs: ChoiceLogprobs | None = None


class Completion(WireModel):
    choices: list[CompletionChoice]


Answer = TypeVar("Answer", bound=WireModel)


def parse_answer(model: type[Answer], body: bytes, url: str) -> Answer:
    """Validate a JSON body as `model`; BackendError naming each wrong field otherwise."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
            for problem in error.errors()[:5]
        )
        raise BackendError(
            f"the server at {url} sent a malformed {model.__name__} answer ({problems}); "
            "check that it is an OpenAI-compatible vLLM server"
        ) from None


def token_id_of(token: str, text_to_id: dict[str, int], url: str) -> int | None:
    """The id of a returned token: from a `token_id:N` string, else by its text (servers without ids)."""
    if not token.startswith(TOKEN_ID_PREFIX):
        return text_to_id.get(token)
    digits = token[len(TOKEN_ID_PREFIX) :]
    if not digits.isascii() or not digits.isdigit():
        raise BackendError(
            f"the server at {url} named a token {token[:40]!r}, which is not token_id:<integer>"
        )
    return int(digits)
