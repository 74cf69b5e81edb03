"""The teacher writes and checks multiple-choice items (issue 15, part 3): rewrite paraphrases a stem and reorders
its options, new and grounded write options with a correct letter and an explanation, judge and consistency see the
options (consistency blind to the letter), and the data card shows where each teacher put the answer. Against a real
OpenAI-compatible server on 127.0.0.1 (`support.openai_server.ExamTeacher`) on the bundled MedQA-schema sample.
The filter's rules, dedup and decontamination on options: tests/unit/test_mcq_generation.py."""

import json
from collections import Counter

import pytest

from medaug import filtering
from medaug.augment.generate import plan, run
from medaug.augment.strategies.base import load_prompt
from medaug.data import prepare
from medaug.data.schema import read_records
from medaug.paths import FilterIO, GenerateIO
from support.exam import exam
from support.openai_server import ExamTeacher, OpenAIServer
from support.paths import ROOT


@pytest.fixture
def exam_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    teacher = ExamTeacher()
    with OpenAIServer(teacher) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture
def exam_run(tmp_path, exam_server):
    """The MedQA sample prepared, then generate run on it with rewrite and new."""
    p = exam()
    prepare.run(p, ROOT, tmp_path / "data/prepared", tmp_path / "metrics/prepare.json")
    out = tmp_path / "data/generated"
    metrics = run(p, tmp_path, GenerateIO.at(tmp_path))
    return {"root": tmp_path, "p": p, "metrics": metrics, "server": exam_server,
            "generated": read_records(out / "generated.jsonl", list("ABCD")),
            "rejects": [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()],
            "train": {r.id: r for r in read_records(tmp_path / "data/prepared/train.jsonl")}}


# ---------------------------------------------------------------- generation


def test_rewrite_paraphrases_the_stem_and_reorders_the_options_the_answer_following_its_text(exam_run):
    rewrites = [r for r in exam_run["generated"] if r.source == "rewrite"]
    assert len(rewrites) == 24
    for r in rewrites:
        parent = exam_run["train"][r.parent_id]
        assert r.question != parent.question and list(r.options) == list("ABCD")
        assert sorted(r.options.values()) == sorted(parent.options.values())
        assert list(r.options.values()) != list(parent.options.values())  # never the parent's order
        assert r.options[r.final_decision] == parent.options[parent.final_decision]
        assert r.long_answer == parent.long_answer and r.teacher["prompt_sha"] == load_prompt("rewrite_options")[1]
    # the reorder is the job's own (seeded by its id): the same on a rerun, spread over the letters
    again = {j.id: j.check({"question": "Where, then?"}) for j in plan(exam_run["p"], list(exam_run["train"].values()))
             if j.strategy == "rewrite"}
    assert all(again[r.id]["options"] == r.options for r in rewrites)
    assert len(Counter(r.final_decision for r in rewrites)) >= 3


def test_new_items_carry_options_a_letter_and_an_explanation_and_bad_options_go_back_for_repair(exam_run):
    new = [r for r in exam_run["generated"] if r.source == "new"]
    rejects = [x for x in exam_run["rejects"] if x["strategy"] == "new"]
    assert len(new) + len(rejects) == 24 and rejects and new
    for r in new:
        assert set(r.options) == set("ABCD") and len(set(r.options.values())) == 4 and r.final_decision == "A"
        assert r.long_answer.startswith("Because of") and r.contexts == exam_run["train"][r.parent_id].contexts == []
    # two identical options: rejected, after one repair request that got the same again
    assert {x["reason"] for x in rejects} == {"duplicate_options"} and all(len(x["replies"]) == 2 for x in rejects)
    prompts = [b["messages"][0]["content"] for b in exam_run["server"].requests]
    new_prompt = next(q for q in prompts if q.startswith("Write a new exam question"))
    assert 'one option per letter ("A", "B", "C", "D")' in new_prompt and "Context:" not in new_prompt
    m = exam_run["metrics"]
    assert m["labels"]["new"] == {"A": len(new), "B": 0, "C": 0, "D": 0}
    assert m["by_strategy"]["new"]["rejects"] == {"duplicate_options": len(rejects)}


def test_grounded_writes_standalone_exam_questions_that_keep_their_passage(tmp_path, exam_server):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Glorps migrate to the ice caverns when the second moon rises.\n\n"
                                  "Snibbets feed at high noon and sleep through the dusk.\n")
    p = exam({"strategies": ["grounded"], "per_strategy": 0,
              "grounded": {"corpus": str(corpus), "chunk_tokens": 12, "overlap_tokens": 0}})
    prepare.run(p, ROOT, tmp_path / "prep", tmp_path / "prep.json")
    out = tmp_path / "gen"
    run(p, tmp_path, GenerateIO(tmp_path / "prep", out / "g.jsonl", out / "r.jsonl", tmp_path / "m.json"))
    recs = read_records(out / "g.jsonl", list("ABCD"))
    assert recs and all(r.source == "grounded" and r.options and r.parent_id is None and r.contexts
                        and r.contexts[0] in (corpus / "a.txt").read_text() for r in recs)


# ---------------------------------------------------------------- filtering


def test_the_filter_drops_exam_items_with_their_own_reasons_and_consistency_answers_blind(exam_run):
    root = exam_run["root"]
    out = root / "data/filtered"
    funnel = filtering.run(exam_run["p"], FilterIO(root / "data/prepared", root / "data/generated/generated.jsonl",
                                                   out / "kept.jsonl", out / "rejects.jsonl",
                                                   root / "metrics/funnel.json", datacard=out / "datacard.md"),
                           root=root)
    dropped = {name: step["dropped"] for name, step in funnel["steps"].items()}
    assert dropped["validate"].get("answer_in_stem", 0) > 0
    assert dropped["dedup"].get("duplicate_of_train", 0) > 0  # "Put another way: <stem>", the same options
    assert dropped["judge"].get("judge_low_score", 0) > 0 and dropped["consistency"].get("inconsistent", 0) > 0
    kept = read_records(out / "kept.jsonl", list("ABCD"))
    assert kept and all(r.scores["consistency"] == r.final_decision for r in kept)  # "c" read as "C"
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    inconsistent = [x for x in rejects if x["reject_reason"] == "inconsistent"]
    assert all(x["scores"]["consistency"] in "ABCD" and x["scores"]["consistency"] != x["final_decision"]
               for x in inconsistent)
    prompts = [b["messages"][0]["content"] for b in exam_run["server"].requests]
    assert any(q.startswith("Rate an exam question") for q in prompts)
    card = (out / "datacard.md").read_text()
    shas = {load_prompt(n)[1][:16] for n in ("rewrite_options", "new_options")}
    assert all(s in card for s in shas) and "| filter judge |" in card and "| filter consistency |" in card
    # where each teacher put the answer: rewrites spread over the letters, the new items all at A
    assert "| generated: new, `fake-teacher` |" in card and "**Letter bias:** `fake-teacher` put the answer at A" in card
    assert "in 0 of" not in card and card.count("**Letter bias:**") == 1
