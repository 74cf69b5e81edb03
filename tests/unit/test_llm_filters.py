"""The teacher-backed filter steps (judge, consistency): their prompt files and reply schemas. End to end against
the real HTTP test teacher: tests/integration/test_llm_filters.py."""

import hashlib
import re

import pytest

from medaug.data.schema import Record
from medaug.filtering.llm_checks import PROMPT_SHAS, SCHEMAS, TEMPLATES, build_prompt
from medaug.llm.structured import validate as validate_reply
from support.paths import ROOT

PROMPTS = ROOT / "src/medaug/filtering/prompts"
ITEM = Record(id="g", question="Does aspirin lower stroke risk?", contexts=["We studied 100 patients.", "Risk fell."],
              final_decision="no")


# --- prompts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["judge", "consistency"])
def test_prompt_files_fill_the_item_show_valid_examples_and_end_where_a_base_model_continues(name):
    assert PROMPT_SHAS[name] == hashlib.sha256((PROMPTS / f"{name}.txt").read_bytes()).hexdigest()
    prompt = build_prompt(name, ITEM)
    assert prompt.endswith("\nReply:") and not re.search(r"\{(context|question|answer)\}", prompt)
    task = prompt.rsplit("### Task", 1)[1]
    assert "Abstract: We studied 100 patients. Risk fell.\nQuestion: Does aspirin lower stroke risk?" in task
    assert ("\nAnswer: no" in task) == (name == "judge")  # consistency answers blind
    examples = re.findall(r"^Reply: (.*)$", TEMPLATES[name], re.MULTILINE)
    assert len(examples) >= 2
    for example in examples:  # every worked example is a reply the step would accept
        assert isinstance(validate_reply(example, SCHEMAS[name], lambda f: f), dict), example


@pytest.mark.parametrize("name", ["judge", "consistency"])
def test_schemas_are_strict_mode_compatible(name):
    schema = SCHEMAS[name]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])


def test_the_fidelity_prompt_sets_the_rewrite_beside_its_parent_blind_to_the_label():
    parent = Record(id="p", question="Does aspirin lower stroke risk?", contexts=["We studied 100 patients."],
                    final_decision="no")
    rewrite = Record(id="g", question="Is stroke risk lowered by aspirin?", contexts=parent.contexts,
                     final_decision="no", source="rewrite", parent_id="p")
    assert PROMPT_SHAS["fidelity"] == hashlib.sha256((PROMPTS / "fidelity.txt").read_bytes()).hexdigest()
    task = build_prompt("fidelity", rewrite, parent).rsplit("### Task", 1)[1]
    assert task == ("\nAbstract: We studied 100 patients.\nQuestion A: Does aspirin lower stroke risk?\n"
                    "Question B: Is stroke risk lowered by aspirin?\nReply:")  # no label: the verdict is blind
    examples = re.findall(r"^Reply: (.*)$", TEMPLATES["fidelity"], re.MULTILINE)
    assert sorted(examples) == ['{"same": "no"}', '{"same": "no"}', '{"same": "yes"}']
    for example in examples:
        assert isinstance(validate_reply(example, SCHEMAS["fidelity"], lambda f: f), dict), example
    schema = SCHEMAS["fidelity"]
    assert schema["additionalProperties"] is False and schema["required"] == ["same"]
