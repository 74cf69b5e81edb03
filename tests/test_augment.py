"""Generation strategies: prompt files, reply parsing, and `run` end to end against a real OpenAI-compatible
server on 127.0.0.1 (records, rejects, metrics, cache)."""

import hashlib
import json
from pathlib import Path

import pytest

from medaug.augment.generate import PROMPTS, build_prompt, load_prompt, parse, parse_fields, run
from medaug.data.schema import Record, read_records, validate, write_records
from medaug.errors import MedaugError
from medaug.params import parse_params
from openai_server import OpenAIServer, pubmedqa_responder

PARENT = Record(id="p1", question="Does aspirin lower stroke risk?",
                contexts=["We studied 100 patients.", "Risk fell."],
                final_decision="yes", long_answer="Aspirin lowered risk.", meshes=["Aspirin"], labels=["M", "R"])


def make_train(n: int) -> list[Record]:
    labels = ["yes", "no", "maybe"]
    return [Record(id=str(1000 + i), question=f"Does treatment {i} improve outcome {i % 3}?",
                   contexts=[f"We enrolled {20 + i} patients in trial {i}.", f"Outcome {i % 3} changed by {i}%."],
                   final_decision=labels[i % 3], long_answer=f"Treatment {i} had an effect.",
                   meshes=["Humans", f"Drug{i}"], labels=["METHODS", "RESULTS"]) for i in range(n)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    write_records(tmp_path / "data/prepared/train.jsonl", make_train(10))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-medaug-SECRET-do-not-write")
    return tmp_path


def params(teacher=None, **generate):
    return parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 2, "max_attempts": 2,
                                     "backoff_s": 0.01, "max_concurrency": 4, **(teacher or {})},
                         "generate": {"strategies": ["rewrite", "new"], "per_strategy": 4, "seed": 0, **generate}})


def run_in(root: Path, p):
    out = root / "data/generated"
    return run(p, root, root / "data/prepared", out / "generated.jsonl", out / "rejects.jsonl",
               root / "metrics/generate.json")


# --- prompts and parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["rewrite", "new"])
def test_prompt_files_fill_the_item_and_end_where_a_base_model_continues(strategy):
    text, sha = load_prompt(strategy)
    assert sha == hashlib.sha256((PROMPTS / f"{strategy}.txt").read_bytes()).hexdigest()
    prompt = build_prompt(text, PARENT)
    assert prompt.endswith("\nQuestion:") and "{" not in prompt
    assert "We studied 100 patients. Risk fell." in prompt
    assert ("Does aspirin lower stroke risk?" in prompt) == (strategy == "rewrite")


def test_parse_accepts_base_model_continuations_and_chat_replies():
    # a base model continues after "Question:"
    assert parse("rewrite", " Is aspirin linked to fewer strokes? (yes)\nAnswer", PARENT) == {
        "question": "Is aspirin linked to fewer strokes?", "final_decision": "yes",
        "long_answer": "Aspirin lowered risk."}
    assert parse("new", " Was the trial randomised?\nAnswer: No.\nExplanation: It was observational.", PARENT) == {
        "question": "Was the trial randomised?", "final_decision": "no", "long_answer": "It was observational."}
    # a chat model with a preamble and markdown
    chat = ("Sure! Here it is:\n**Question:** Did risk fall with aspirin?\n**Answer:** Maybe, partly\n"
            "**Explanation:** Risk fell.")
    assert parse("new", chat, PARENT) == {"question": "Did risk fall with aspirin?", "final_decision": "maybe",
                                         "long_answer": "Risk fell."}
    # a model writing several items: the first one only, its question with its own answer
    looped = " Is it safe?\nAnswer: No\nExplanation: Risk rose.\nQuestion: Is it cheap?\nAnswer: yes"
    assert parse_fields(looped) == {"question": "Is it safe?", "answer": "No", "explanation": "Risk rose."}
    assert parse_fields("Question: a?\nQuestion: b?") == {"question": "a?"}


@pytest.mark.parametrize("strategy,reply,reason", [
    ("rewrite", "", "no_question"),
    ("rewrite", "I am sorry, I cannot rewrite this.", "no_question"),
    ("rewrite", "Question: does ASPIRIN lower stroke risk ?", "same_question"),
    ("new", "Answer: yes\nExplanation: x", "no_question"),
    ("new", "Question: Was it blinded?\nAnswer: probably\nExplanation: x", "unknown_label"),
    ("new", "Question: Was it blinded?", "unknown_label"),
    ("new", "Question: Was it blinded?\nAnswer: <yes, no or maybe>", "unknown_label"),
    # the worked example's question, about another study
    ("rewrite", "Is walking every day associated with better blood sugar control in adults?", "copied_example"),
    ("new", "Question: Did patients who walked daily have a lower HbA1c?\nAnswer: yes", "copied_example"),
    ("new", "Question: the new question?\nAnswer: yes", "copied_example"),  # all of a short one
])
def test_parse_rejects_with_a_reason(strategy, reply, reason):
    assert parse(strategy, reply, PARENT, load_prompt(strategy)[0]) == reason


def test_a_phrase_shared_with_the_example_is_fine_when_the_item_has_it_too():
    parent = Record(id="p2", question="Does walking help?", final_decision="yes",
                    contexts=["Walking at least 30 minutes a day lowered HbA1c."])
    reply = "Does walking at least 30 minutes a day lower HbA1c?"
    assert parse("rewrite", reply, parent, load_prompt("rewrite")[0])["question"] == reply


def test_pubmedqa_responder_answers_both_prompts_validly():
    for strategy in ("rewrite", "new"):
        reply = pubmedqa_responder(build_prompt(load_prompt(strategy)[0], PARENT))
        assert isinstance(parse(strategy, reply, PARENT), dict), reply
    assert pubmedqa_responder("Abstract: x\nQuestion: y?\nAnswer:") in ("yes", "no", "maybe")


# --- run -----------------------------------------------------------------------------------------------------


def test_run_writes_records_metrics_and_a_rerun_is_free(project, monkeypatch):
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(project, params())
        gen_path = project / "data/generated/generated.jsonl"
        first_bytes = gen_path.read_bytes()
        assert len(srv.requests) == 8
        m2 = run_in(project, params())
        assert len(srv.requests) == 8, "a rerun must send no request"
    assert gen_path.read_bytes() == first_bytes
    assert m == {"requests": 8, "cache_hits": 0, "cache_misses": 8, "teacher_errors": 0, "parse_rejects": 0,
                 "generated": 8, "by_strategy": {s: {"requests": 4, "cache_hits": 0, "teacher_errors": 0,
                                                     "parse_rejects": 0, "generated": 4, "reject_reasons": {}}
                                                 for s in ("rewrite", "new")},
                 "input_tokens": m["input_tokens"], "output_tokens": m["output_tokens"]}
    assert m["input_tokens"] > 0 and m["output_tokens"] > 0
    assert m2["cache_hits"] == 8 and m2["cache_misses"] == 0 and m2["generated"] == 8
    assert json.loads((project / "metrics/generate.json").read_text()) == m2

    train = {r.id: r for r in read_records(project / "data/prepared/train.jsonl")}
    recs = read_records(gen_path)  # validates every line against the schema
    shas = {s: load_prompt(s)[1] for s in ("rewrite", "new")}
    for r in recs:
        parent = train[r.parent_id]
        assert r.id == f"{parent.id}-{r.source}-0"
        assert r.contexts == parent.contexts and r.meshes == parent.meshes
        assert r.teacher["model"] == "fake-teacher" and r.teacher["prompt_sha"] == shas[r.source]
        assert len(r.teacher["request_sha"]) == 64
        if r.source == "rewrite":
            assert r.question.startswith("In this study, ")
            assert (r.final_decision, r.long_answer) == (parent.final_decision, parent.long_answer)
        else:
            assert r.question != parent.question and r.long_answer == parent.contexts[0]
    assert sorted(r.source for r in recs) == ["new"] * 4 + ["rewrite"] * 4
    assert len({r.parent_id for r in recs if r.source == "rewrite"}) == 4
    # the API key is never written anywhere
    for f in project.rglob("*"):
        if f.is_file():
            assert b"SECRET" not in f.read_bytes(), f


def test_selection_is_deterministic_and_zero_means_all(project, monkeypatch):
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        run_in(project, params(per_strategy=3, seed=7))
        a = [r.id for r in read_records(project / "data/generated/generated.jsonl")]
        run_in(project, params(per_strategy=3, seed=7))
        assert [r.id for r in read_records(project / "data/generated/generated.jsonl")] == a
        m = run_in(project, params(per_strategy=0, strategies=["rewrite"]))
    assert m["generated"] == 10 and set(m["by_strategy"]) == {"rewrite"}


def test_an_edited_prompt_file_invalidates_exactly_its_calls(project, monkeypatch, tmp_path_factory):
    import medaug.augment.generate as gen
    prompts = tmp_path_factory.mktemp("prompts")
    for s in ("rewrite", "new"):
        (prompts / f"{s}.txt").write_text(load_prompt(s)[0])
    monkeypatch.setattr(gen, "PROMPTS", prompts)
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        run_in(project, params())
        (prompts / "new.txt").write_text(load_prompt("new")[0].replace("Write a new research question",
                                                                          "Write a new research question, please,"))
        m = run_in(project, params())
    assert m["by_strategy"]["rewrite"]["cache_hits"] == 4 and m["by_strategy"]["new"]["cache_hits"] == 0
    assert len(srv.requests) == 12


def test_unparsable_replies_go_to_rejects_and_failed_requests_are_counted(project, monkeypatch):
    def responder(prompt):  # refuses one in three items, otherwise answers well
        if "trial 3." in prompt or "trial 6." in prompt:
            return "I'm sorry, but I can't help with that."
        return pubmedqa_responder(prompt)

    # each first attempt of a prompt fails at rate 0.5 (500/429), and there is a single attempt
    with OpenAIServer(responder, fault_rate=0.5, faults=("500", "429"), seed=3) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(project, params(teacher={"max_attempts": 1}, per_strategy=0))
    failed = {prompt for prompt, _, _ in srv.fault_log}
    assert 0 < m["teacher_errors"] == len(failed) < 20
    rejects = [json.loads(x) for x in (project / "data/generated/rejects.jsonl").read_text().splitlines()]
    assert m["parse_rejects"] == len(rejects) > 0
    assert sum(sum(b["reject_reasons"].values()) for b in m["by_strategy"].values()) == len(rejects)
    for rej in rejects:
        assert rej["reason"] == "no_question" and rej["reply"].startswith("I'm sorry")
        assert rej["parent_id"] in ("1003", "1006") and rej["id"] == f"{rej['parent_id']}-{rej['strategy']}-0"
    assert m["generated"] + m["parse_rejects"] + m["teacher_errors"] == m["requests"] == 20
    recs = read_records(project / "data/generated/generated.jsonl")
    assert len(recs) == m["generated"] and all(validate(r.to_dict(), "x") for r in recs)


def test_when_every_request_fails_the_run_stops_with_the_reason(project, monkeypatch):
    with OpenAIServer(pubmedqa_responder, fault_rate=1.0, faults=("500",)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match="all 8 teacher requests failed.*http_500"):
            run_in(project, params())
    assert not (project / "data/generated/generated.jsonl").exists()


def test_run_with_the_local_backend_on_a_tiny_model(project):
    """Whatever a tiny random model says, every request ends as a record or a reject, and a rerun is cached."""
    p = parse_params({"teacher": {"backend": "local", "model": "tiny-llama", "max_new_tokens": 16, "batch_size": 2},
                      "generate": {"per_strategy": 2}})
    m = run_in(project, p)
    assert m["requests"] == 4 and m["teacher_errors"] == 0 and m["cache_misses"] == 4
    assert m["generated"] + m["parse_rejects"] == 4 and m["output_tokens"] > 0
    rejects = (project / "data/generated/rejects.jsonl").read_text().splitlines()
    assert len(rejects) == m["parse_rejects"]
    assert all(r.teacher["model"] == "tiny-llama" for r in read_records(project / "data/generated/generated.jsonl"))
    assert run_in(project, p)["cache_hits"] == 4
