"""The one table of eval.yml's inputs (plugin_utils/input_table.py) and what follows from it:
old names read with a deprecation line, the checker reading only the table's names, the role
variables eval_run.yml sets and eval_run's specs document, and README's table of inputs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible_collections.vlmfleet.shared.plugins.plugin_utils import inputs
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.input_table import (
    EVAL_INPUTS,
    INPUT_NAMES,
    eval_given_inputs,
    eval_input_names,
)

ROOT = Path(__file__).resolve().parents[3]


def test_an_old_name_is_read_as_the_input_with_a_line_naming_the_new_one():
    given = eval_given_inputs({"eval_data_source": "ship", "limit": "3"})
    assert given["raw"]["data_source"] == "ship"
    assert given["raw"]["limit"] == "3"
    assert given["raw"]["models"] is None
    assert given["deprecations"] == [
        "eval_data_source is an old name of eval.yml's input data_source: use -e "
        "data_source=... (the old name is still read, for now)"
    ]
    assert given["error"] is None


def test_an_input_and_its_old_name_disagreeing_is_refused_naming_both():
    given = eval_given_inputs({"judge": "openai", "eval_run_judge": "exact_matching"})
    assert given["error"] == (
        "judge='openai' and its old name eval_run_judge='exact_matching' disagree; give judge only"
    )


def test_the_same_value_under_both_names_is_accepted():
    given = eval_given_inputs({"judge": "openai", "eval_run_judge": "openai"})
    assert given["error"] is None
    assert given["raw"]["judge"] == "openai"


def test_names_read_are_the_inputs_and_their_old_names_each_once():
    names = eval_input_names()
    assert len(names) == len(set(names))
    assert set(INPUT_NAMES) < set(names)
    assert "eval_judge_model" in names


def test_the_checker_reads_only_inputs_of_the_table():
    source = Path(inputs.__file__).read_text()
    read = set(re.findall(r"raw\.get\(\"(\w+)\"\)", source))
    assert read, "the checker's reads were not found"
    assert read <= set(INPUT_NAMES), read - set(INPUT_NAMES)
    assert set(inputs.RESUMABLE) == {i.name for i in EVAL_INPUTS if i.resumable}


def test_each_role_variable_is_set_from_its_input_and_documented_by_eval_run():
    play = yaml.safe_load((ROOT / "playbooks" / "eval_run.yml").read_text())
    play_vars = play[0]["vars"]
    specs = yaml.safe_load(
        (ROOT / "roles" / "eval_run" / "meta" / "argument_specs.yml").read_text()
    )
    documented = {
        name for entry in specs["argument_specs"].values() for name in entry.get("options", {})
    }
    with_role_var = [i for i in EVAL_INPUTS if i.role_var]
    assert with_role_var
    for entry in with_role_var:
        assert play_vars[entry.role_var] == f"{{{{ eval_inputs.{entry.name} }}}}", entry
        assert entry.role_var in documented, entry.role_var


def test_readme_documents_every_input_and_only_those():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| extra var | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", table, flags=re.M))
    names = {n for cell in documented for n in re.findall(r"`(\w+)`", cell)}
    assert names == set(INPUT_NAMES)


def test_the_naming_rule_bare_words_but_eval_hosts():
    prefixed = [n for n in INPUT_NAMES if n.startswith("eval_")]
    assert prefixed == ["eval_hosts"]
