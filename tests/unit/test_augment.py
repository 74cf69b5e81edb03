"""Generation strategies: prompt files, reply parsing, and `run` with a tiny local teacher. `run` against a real
OpenAI-compatible server on 127.0.0.1 (records, rejects, metrics, cache): tests/integration/test_augment.py."""

import hashlib
import json

import pytest

from medaug.augment.strategies.base import PROMPTS, build_prompt, load_prompt
from support.strategies import check, schema
from medaug.data.schema import Record, read_records
from medaug.llm.structured import validate as validate_reply
from medaug.params import parse_params
from support.generate import read_rejects, run_in
from support.openai_server import pubmedqa_responder

PARENT = Record(id="p1", question="Does aspirin lower stroke risk?",
                contexts=["We studied 100 patients.", "Risk fell."],
                final_decision="yes", long_answer="Aspirin lowered risk.", meshes=["Aspirin"], labels=["M", "R"])


# --- prompts and checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["rewrite", "new"])
def test_prompt_files_fill_the_item_ask_for_json_and_end_where_a_base_model_continues(strategy):
    text, sha = load_prompt(strategy)
    assert sha == hashlib.sha256((PROMPTS / f"{strategy}.txt").read_bytes()).hexdigest()
    prompt = build_prompt(text, PARENT)
    assert prompt.endswith("\nReply:") and "{context}" not in prompt and "{question}" not in prompt
    example = json.loads(prompt.split("Reply: ", 1)[1].split("\n", 1)[0])  # the worked example is valid JSON
    assert set(example) == set(schema(strategy)["properties"])
    assert "We studied 100 patients. Risk fell." in prompt
    assert ("Does aspirin lower stroke risk?" in prompt) == (strategy == "rewrite")


def test_check_keeps_the_question_and_takes_the_label_from_the_right_place():
    assert check("rewrite", {"question": "Is aspirin linked to fewer strokes? (yes)"}, PARENT) == {
        "question": "Is aspirin linked to fewer strokes?", "final_decision": "yes",
        "long_answer": "Aspirin lowered risk."}
    assert check("new", {"question": "Was the trial randomised?", "answer": "no",
                         "explanation": "It was observational."}, PARENT) == {
        "question": "Was the trial randomised?", "final_decision": "no", "long_answer": "It was observational."}


@pytest.mark.parametrize("strategy,question,reason", [
    ("rewrite", "", "no_question"),
    ("rewrite", "I am sorry, I cannot rewrite this.", "no_question"),
    ("rewrite", "does ASPIRIN lower stroke risk ?", "same_question"),
    # the worked example's question, about another study
    ("rewrite", "Is walking every day associated with better blood sugar control in adults?", "copied_example"),
    ("new", "Did patients who walked daily have a lower HbA1c?", "copied_example"),
    ("new", "the new question?", "copied_example"),  # all of a short one, from the instructions
])
def test_check_rejects_with_a_reason(strategy, question, reason):
    fields = {"question": question, "answer": "yes", "explanation": "x"}
    assert check(strategy, fields, PARENT, load_prompt(strategy)[0]) == reason


def test_a_phrase_shared_with_the_example_is_fine_when_the_item_has_it_too():
    parent = Record(id="p2", question="Does walking help?", final_decision="yes",
                    contexts=["Walking at least 30 minutes a day lowered HbA1c."])
    q = "Does walking at least 30 minutes a day lower HbA1c?"
    assert check("rewrite", {"question": q}, parent, load_prompt("rewrite")[0])["question"] == q


def test_pubmedqa_responder_answers_both_prompts_validly():
    for strategy in ("rewrite", "new"):
        reply = pubmedqa_responder(build_prompt(load_prompt(strategy)[0], PARENT))
        fields = validate_reply(reply, schema(strategy), lambda f: f)
        assert isinstance(check(strategy, fields, PARENT), dict), reply
    assert pubmedqa_responder("Abstract: x\nQuestion: y?\nAnswer:") in ("yes", "no", "maybe")


def test_run_with_the_local_backend_on_a_tiny_model(generate_project, tiny_cache):
    """Whatever a tiny random model says, every request ends as a record or a reject, and a rerun is cached."""
    p = parse_params({"teacher": {"backend": "local", "model": "tiny-llama", "max_new_tokens": 16, "batch_size": 2},
                      "generate": {"per_strategy": 2}})
    m = run_in(generate_project, p)
    t = m["teacher"]
    assert t["failed"] == 0 and t["output_tokens"] > 0 and m["requested"] == 4
    assert m["generated"] + sum(m["rejects"].values()) == 4
    rejects = read_rejects(generate_project)
    assert len(rejects) == sum(m["rejects"].values())
    # a JSON request is prefilled with the object's opening, so every reply starts as the schema asks
    assert all(r["replies"][0].startswith('{"question": "') for r in rejects)
    assert all(r.teacher["model"] == "tiny-llama"
               for r in read_records(generate_project / "data/generated/generated.jsonl"))
    assert run_in(generate_project, p)["teacher"]["sent"] == 0
