"""Typed errors. Each names the field or record at fault and says how to fix it."""

from __future__ import annotations


class PromptrecError(Exception):
    """Base class; the CLI turns any of these into a message and a non-zero exit code."""

    exit_code = 1


class DataError(PromptrecError):
    """A dataset or catalogue file is unreadable or inconsistent."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, record: str | None = None):
        where = ", ".join(part for part in (path and f"file {path}", record and f"record {record}") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.record = record


class RequestError(PromptrecError):
    """A rank request is malformed (empty candidates, duplicate ids, misspelt fields...)."""

    exit_code = 2


class TemplateError(PromptrecError):
    """A prompt template is missing, declares a bad contract, or uses an undefined variable."""

    exit_code = 3


class BackendError(PromptrecError):
    """The LLM backend could not load, answer in time, or tokenise a label as required."""

    exit_code = 4
