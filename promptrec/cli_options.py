"""Command-line options shared by `promptrec rank`, `demo` and `eval`.

The LLM options take their help text from `LLMOptions` (promptrec/options.py), the one definition that
the recommender factory and the evaluation's RunConfig also use; `llm_options` validates the values.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from promptrec.errors import RequestError
from promptrec.options import LLMOptions


def _described(name: str, **extra: Any) -> Any:
    return typer.Option(help=LLMOptions.model_fields[name].description, **extra)


BackendOption = Annotated[str, _described("backend")]
ModelOption = Annotated[str | None, _described("model")]
TemplateOption = Annotated[str | None, _described("template")]
BaseUrlOption = Annotated[str | None, _described("base_url")]
MaxHistoryOption = Annotated[int, _described("max_history", min=0)]
DemosOption = Annotated[int, _described("demos", min=0)]
DemoSelectorOption = Annotated[str, _described("demo_selector")]
BootstrapOption = Annotated[int, _described("bootstrap", min=1)]


def llm_options(**values: Any) -> LLMOptions:
    """LLMOptions from CLI values, or a RequestError naming the option and its allowed values."""
    try:
        return LLMOptions(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}" for problem in error.errors()
        )
        raise RequestError(f"invalid options: {problems}") from error
