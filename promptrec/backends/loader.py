"""Build a backend by name. Optional engines are imported only when asked for, so a plain install works."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from promptrec.backends.base import Backend
from promptrec.bundled import BUNDLED_ALIASES, bundled_model_dir
from promptrec.errors import BackendError

# kind -> (module, class); each module may need an optional extra, hence the lazy import.
BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("promptrec.backends.transformers_backend", "TransformersBackend"),
    "vllm": ("promptrec.backends.vllm_backend", "VLLMBackend"),
    "openai": ("promptrec.backends.openai_backend", "OpenAIServerBackend"),
}


def resolve_model(model: str | None) -> str:
    """The model reference the backends take; None, "bundled" or the bundled name mean the bundled folder."""
    if model is None or model in BUNDLED_ALIASES:
        return str(bundled_model_dir())
    return model


def load_backend(kind: str = "transformers", model: str | None = None, **options: Any) -> Backend:
    """Construct the `kind` backend on `model` with backend-specific keyword `options`.

    For "openai", `model` is the served model name; a server started on the bundled folder serves it under
    that folder's path, which is what None/"bundled" resolve to.
    """
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}; valid backends are: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[kind]
    try:
        backend_class = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise BackendError(
            f"the {kind} backend could not be imported ({exc}); install its extra dependencies"
        ) from exc
    try:  # check the options against the signature first, so a misspelt one is named, not a traceback
        inspect.signature(backend_class).bind(model=model, **options)
    except TypeError as exc:
        raise BackendError(f"invalid options for the {kind} backend {sorted(options)}: {exc}") from exc
    return backend_class(model=resolve_model(model), **options)
