"""Every template failure is a TemplateError: bad names, missing files, sandbox escapes, render limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promptrec.errors import TemplateError
from promptrec.models import Item, RankMode, RankRequest, UserContext
from promptrec.prompting.builder import PromptBudget, build_prompts
from promptrec.prompting.templates import TemplateLibrary, default_template_dirs
from tests.fake_backend import ScriptedBackend

HEADER = '{#- contract\nformat = "label_logprob"\nmode = "score"\n-#}\n{% block system %}s{% endblock %}\n'
REQUEST = RankRequest(user=UserContext(), candidates=[Item(id="a", title="A"), Item(id="b", title="B")])


def library_with(tmp_path: Path, user_block: str) -> TemplateLibrary:
    (tmp_path / "hostile.jinja").write_text(HEADER + "{% block user %}" + user_block + "{% endblock %}")
    return TemplateLibrary([tmp_path, *default_template_dirs()])


def render(library: TemplateLibrary) -> None:
    template = library.get("hostile", RankMode.SCORE)
    build_prompts(REQUEST, template, ScriptedBackend(), PromptBudget())


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "/abs/path/name", "../prompts/listwise_score", "a/b", "x" * 500]
)
def test_names_that_are_paths_are_template_errors(name):
    with pytest.raises(TemplateError, match="not a template name"):
        TemplateLibrary().get(name, RankMode.SCORE)


def test_a_missing_template_lists_the_available_ones():
    with pytest.raises(TemplateError, match="no template named 'nope'; available: .*listwise_score"):
        TemplateLibrary().get("nope", RankMode.SCORE)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("{{ candidates.__class__.__mro__ }}", "sandbox|undefined"),
        ("{{ ''.__class__.__subclasses__() }}", "sandbox|undefined"),
        ("{% set x = candidates.append(1) %}", "sandbox"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ('{% include "missing.jinja" %}', "missing.jinja"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recurses|failed"),
        ("{{ 'x' * 100000000 }}", "multiplied a sequence"),
        ("{{ 10 ** 100000000 }}", "power"),
        ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "more than 200000 characters"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "more than 200000 characters",
        ),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "more than 2 s",
        ),
    ],
)
def test_hostile_templates_are_template_errors_within_the_limits(tmp_path, block, expected):
    started = time.monotonic()
    with pytest.raises(TemplateError, match=expected):
        render(library_with(tmp_path, block))
    assert time.monotonic() - started < 10
