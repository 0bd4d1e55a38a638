from pathlib import Path

import pytest

from promptrec.errors import TemplateError
from promptrec.models import RankMode
from promptrec.prompting.contract import OutputFormat
from promptrec.prompting.templates import DEFAULT_TEMPLATES, TemplateLibrary

VALID_HEADER = '{#- contract\nformat = "json_array"\nmode = "generate"\n-#}\n'
BLOCKS = "{% block system %}S{% endblock %}{% block user %}{{ greeting }}{% endblock %}"


def write_template(folder: Path, name: str, text: str) -> TemplateLibrary:
    (folder / f"{name}.jinja").write_text(text, encoding="utf-8")
    return TemplateLibrary([folder])


def test_every_shipped_template_declares_a_contract_matching_its_mode():
    library = TemplateLibrary()
    assert set(DEFAULT_TEMPLATES.values()) <= set(library.names())
    for mode, name in DEFAULT_TEMPLATES.items():
        assert library.get(name, mode).contract.mode is mode
    assert library.get(None, RankMode.SCORE).contract.format is OutputFormat.LABEL_LOGPROB


def test_unknown_variable_is_a_clear_error(tmp_path):
    library = write_template(tmp_path, "greet", VALID_HEADER + BLOCKS.replace("greeting", "greting"))
    template = library.get("greet", RankMode.GENERATE)
    with pytest.raises(TemplateError, match="greting"):
        template.render({"greeting": "hi"})


def test_rendering_with_known_variables(tmp_path):
    library = write_template(tmp_path, "greet", VALID_HEADER + BLOCKS)
    messages = library.get("greet", RankMode.GENERATE).render({"greeting": "hello"})
    assert [(m.role, m.content) for m in messages] == [("system", "S"), ("user", "hello")]


def test_missing_contract_header_is_rejected(tmp_path):
    library = write_template(tmp_path, "bare", BLOCKS)
    with pytest.raises(TemplateError, match="contract"):
        library.get("bare", RankMode.GENERATE)


def test_contract_inconsistent_with_mode_is_rejected(tmp_path):
    header = '{#- contract\nformat = "yes_no"\nmode = "generate"\n-#}\n'
    library = write_template(tmp_path, "odd", header + BLOCKS)
    with pytest.raises(TemplateError, match="needs mode 'pointwise'"):
        library.get("odd", RankMode.GENERATE)


def test_asking_a_template_for_the_wrong_mode_names_the_fix():
    with pytest.raises(TemplateError, match="listwise_score"):
        TemplateLibrary().get("listwise_generate", RankMode.SCORE)


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(TemplateError, match="listwise_generate"):
        TemplateLibrary().get("no_such_template", RankMode.GENERATE)


def test_template_code_cannot_reach_python_internals(tmp_path):
    sneaky = (
        VALID_HEADER
        + "{% block system %}{{ greeting.__class__.__mro__ }}{% endblock %}{% block user %}x{% endblock %}"
    )
    library = write_template(tmp_path, "sneaky", sneaky)
    with pytest.raises(Exception, match="unsafe|access"):
        library.get("sneaky", RankMode.GENERATE).render({"greeting": "hi"})


def test_template_folders_may_be_strings_and_bad_folders_are_named(tmp_path):
    write_template(tmp_path, "greet", VALID_HEADER + BLOCKS)
    assert TemplateLibrary([str(tmp_path)]).names() == ["greet"]
    with pytest.raises(TemplateError, match=r"single path .*pass \["):
        TemplateLibrary(str(tmp_path))
    with pytest.raises(TemplateError, match="do not exist"):
        TemplateLibrary([tmp_path / "absent"])
