"""Prompt templates: Jinja files in prompts/, each opening with its output contract.

A template file starts with a Jinja comment holding TOML, the contract the parser will enforce:

    {#- contract
    format = "json_array"
    mode = "generate"
    -#}

and defines a `system` block and a `user` block, rendered into chat messages. Templates render in a
sandboxed environment with StrictUndefined, so a misspelt variable is an error, never an empty string.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.sandbox import SecurityError
from pydantic import ValidationError

from promptrec.errors import PromptrecError, TemplateError
from promptrec.models import RankMode
from promptrec.prompting.contract import OutputContract
from promptrec.prompting.formatter import ChatMessage
from promptrec.prompting.template_sandbox import LimitedSandbox, RenderLimits, limited_join, render_budget

_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_CONTRACT_HEADER = re.compile(r"\A\{#-?\s*contract\s*\n(?P<toml>.*?)\n\s*-?#\}", re.DOTALL)
_MESSAGE_BLOCKS = ("system", "user")

DEFAULT_TEMPLATES: dict[RankMode, str] = {
    RankMode.GENERATE: "listwise_generate",
    RankMode.SCORE: "listwise_score",
    RankMode.POINTWISE: "pointwise_yesno",
}


def default_template_dirs() -> list[Path]:
    """Installed wheels carry the templates inside the package; a source checkout has them at the root."""
    package_dir = Path(__file__).resolve().parent.parent
    return [path for path in (package_dir / "prompts", package_dir.parent / "prompts") if path.is_dir()]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    contract: OutputContract
    compiled: Template
    limits: RenderLimits = RenderLimits()

    def render(self, variables: dict[str, Any]) -> list[ChatMessage]:
        """Render the system and user messages within the render limits; any failure is a TemplateError."""
        compiled = self.compiled
        messages = []
        with render_budget(self.name, self.limits) as budget:
            try:
                context = compiled.new_context(variables)
                for role in _MESSAGE_BLOCKS:
                    content = limited_join(compiled.blocks[role](context), budget).strip()
                    if content:
                        messages.append(ChatMessage(role=role, content=content))
            except PromptrecError:
                raise
            except UndefinedError as error:
                raise TemplateError(
                    f"template {self.name!r} uses an undefined variable: {error.message}; "
                    f"available variables: {sorted(variables)}"
                ) from error
            except SecurityError as error:
                raise TemplateError(f"template {self.name!r} broke the sandbox rules: {error}") from error
            except TemplateNotFound as error:
                raise TemplateError(
                    f"template {self.name!r} includes {error.name!r}, which does not exist"
                ) from error
            except RecursionError as error:
                raise TemplateError(f"template {self.name!r} recurses too deeply") from error
            except Exception as error:  # a template is foreign code: whatever it raises is its own fault
                raise TemplateError(
                    f"template {self.name!r} failed: {type(error).__name__}: {error}"
                ) from error
        return messages


class TemplateLibrary:
    """Finds templates by name in a list of folders (earlier folders win)."""

    def __init__(self, directories: Sequence[str | Path] | None = None):
        if isinstance(directories, str | Path):
            raise TemplateError(
                f"directories must be a list of folders, got the single path {str(directories)!r}; "
                f"pass [{str(directories)!r}]"
            )
        self.directories = (
            [Path(directory) for directory in directories]
            if directories is not None
            else default_template_dirs()
        )
        missing = [str(directory) for directory in self.directories if not directory.is_dir()]
        if missing:
            raise TemplateError(f"template folders {missing} do not exist; pass folders of .jinja files")
        self._environment = LimitedSandbox(
            loader=FileSystemLoader(self.directories),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self._cache: dict[str, PromptTemplate] = {}

    def names(self) -> list[str]:
        """Templates that can be asked for; files starting with '_' are partials for {% include %}."""
        return sorted(
            {
                path.stem
                for directory in self.directories
                for path in directory.glob("*.jinja")
                if not path.name.startswith("_")
            }
        )

    def load(self, name: str) -> PromptTemplate:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def get(self, name: str | None, mode: RankMode) -> PromptTemplate:
        """The named template (or the mode's default), checked to declare `mode`."""
        name = name or DEFAULT_TEMPLATES[mode]
        template = self.load(name)
        if template.contract.mode is not mode:
            raise TemplateError(
                f"template {name!r} declares mode {template.contract.mode.value!r} but the request asks for "
                f"{mode.value!r}; pick a {mode.value} template such as {DEFAULT_TEMPLATES[mode]!r}"
            )
        return template

    def _load(self, name: str) -> PromptTemplate:
        if not _TEMPLATE_NAME.fullmatch(name) or ".." in name:
            raise TemplateError(
                f"template name {name[:120]!r} is not a template name (a file stem in the template folders, "
                f"e.g. 'listwise_score'); available: {self.names()}. For your own folder use "
                "TemplateLibrary([folder, *default_template_dirs()])"
            )
        candidates = [directory / f"{name}.jinja" for directory in self.directories]
        path = next((path for path in candidates if path.is_file()), None)
        if path is None:
            raise TemplateError(f"no template named {name!r}; available: {self.names()}")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TemplateError(f"template {path} cannot be read as UTF-8 text: {error}") from error
        header = _CONTRACT_HEADER.match(source)
        if header is None:
            raise TemplateError(f"template {path} must open with a '{{#- contract ... -#}}' TOML header")
        try:
            contract = OutputContract.model_validate(tomllib.loads(header.group("toml")))
        except (tomllib.TOMLDecodeError, ValidationError) as error:
            raise TemplateError(f"template {path}: invalid contract header: {error}") from error
        try:
            compiled = self._environment.get_template(path.name)
        except TemplateSyntaxError as error:
            raise TemplateError(f"template {path} line {error.lineno}: {error.message}") from error
        except TemplateNotFound as error:
            raise TemplateError(f"template {path} refers to {error.name!r}, which does not exist") from error
        missing = [block for block in _MESSAGE_BLOCKS if block not in compiled.blocks]
        if missing:
            raise TemplateError(f"template {path} must define blocks {missing}; add {{% block NAME %}}")
        return PromptTemplate(name=name, path=path, contract=contract, compiled=compiled)
