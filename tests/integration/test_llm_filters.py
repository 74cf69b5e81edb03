"""The teacher-backed filter steps (judge, consistency) end to end: `filtering.run` against a real OpenAI-compatible
server on 127.0.0.1 whose deterministic answers come from markers planted in the generated questions. Their prompt
files and schemas: tests/unit/test_llm_filters.py."""

import json
import re
from pathlib import Path

import pytest

from medaug import filtering
from medaug.data.schema import Record, read_records, write_records
from medaug.errors import MedaugError
from medaug.filtering import steps
from medaug.filtering.llm_checks import consistency, judge
from medaug.params import Params, parse_params
from medaug.paths import FilterIO
from support.openai_server import OpenAIServer
from support.paths import ROOT

MARK = re.compile(r"\[judge=(\w+) answer=(\w+)\]")
RUBRIC = {"answerable": 5, "supported": 4, "sound": 3, "well_formed": 2}  # distinct, to check the mapping


def responder(prompt: str) -> str:
    """Judge prompt: every criterion from RUBRIC and the overall score from the question's `judge=` marker
    ("garbage": never JSON; "fix": JSON only once asked to repair). Consistency prompt: the `answer=` marker."""
    task = prompt.rsplit("### Task", 1)[1]
    score, answer = MARK.search(re.search(r"^Question: (.*)$", task, re.MULTILINE).group(1)).groups()
    repair = "could not be used" in task
    if prompt.startswith("Rate a yes/no/maybe"):
        if score == "garbage" or (score == "fix" and not repair):
            return "This item looks fine to me."
        return json.dumps({**{k: str(v) for k, v in RUBRIC.items()}, "score": "4" if score == "fix" else score})
    assert prompt.startswith("Answer a research question"), prompt[:80]
    assert not re.search(r"^Answer:", task, re.MULTILINE), "the consistency prompt must not show the label"
    return json.dumps({"answer": answer})


class FailingOn(OpenAIServer):
    """Answers 500 to every prompt that holds `marker` (the real server's faults hit prompts at random)."""

    def __init__(self, marker: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def _fault(self, prompt: str, attempt: int) -> str | None:
        return "500" if self.marker in prompt else None


@pytest.fixture()
def llm_steps(monkeypatch):
    monkeypatch.setitem(steps.STEPS, "judge", judge)
    monkeypatch.setitem(steps.STEPS, "consistency", consistency)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def params(min_score: int) -> Params:
    p = parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 2, "max_attempts": 2,
                                  "backoff_s": 0.01, "max_concurrency": 4}})
    p.filter.steps = ["validate", "decontaminate", "judge", "consistency"]
    p.filter.judge.min_score = min_score
    return p


def item(parent: Record, gid: str, score: str, answer: str | None = None, extra: str = "") -> Record:
    """A rewrite of `parent` whose question tells the responder what to reply; `answer` defaults to the label."""
    question = f"In this study {extra}[judge={score} answer={answer or parent.final_decision}], {parent.question}"
    return Record(id=gid, question=question, contexts=parent.contexts, final_decision=parent.final_decision,
                  long_answer="x", source="rewrite", parent_id=parent.id,
                  teacher={"model": "m", "prompt_sha": "p", "request_sha": gid})


def other(label: str) -> str:
    return "no" if label == "yes" else "yes"


def run_filter(root: Path, prepared_dir: Path, records: list[Record], p: Params):
    gen_path = root / "generated.jsonl"
    write_records(gen_path, records)
    out = root / "filtered"
    funnel = filtering.run(p, FilterIO(prepared_dir, gen_path, out / "kept.jsonl", out / "rejects.jsonl",
                                       root / "funnel.json"), root=root)
    rejects = {r["id"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    return funnel, read_records(out / "kept.jsonl"), rejects


def judged_questions(srv: OpenAIServer) -> list[str]:
    """The question of every first judge request (a repair request is a longer conversation)."""
    prompts = [body["messages"][0]["content"] for body in srv.requests if len(body["messages"]) == 1]
    return [re.search(r"^Question: (.*)$", t.rsplit("### Task", 1)[1], re.MULTILINE).group(1)
            for t in prompts if t.startswith("Rate a yes/no/maybe")]


# --- the steps in the funnel -----------------------------------------------------------------------------------


def test_filter_teacher_gives_the_judge_its_own_model_and_the_funnel_and_card_name_it(tmp_path, prepared, llm_steps,
                                                                                      monkeypatch):
    """filter.teacher: the judge and the consistency check ask their own model (not the generator's), and the
    funnel and the data card say which."""
    t = prepared["train"]
    records = [item(t[0], "s5", "5"), item(t[2], "s3", "3")]
    p = params(3)
    p.filter.teacher = {"model": "judge-model", "temperature": 0}
    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        gen_path = tmp_path / "generated.jsonl"
        write_records(gen_path, records)
        out = tmp_path / "filtered"
        descriptors = tmp_path / p.generate.mesh.descriptors  # the data card's MeSH branches
        descriptors.parent.mkdir(parents=True)
        descriptors.write_bytes((ROOT / p.generate.mesh.descriptors).read_bytes())
        funnel = filtering.run(p, FilterIO(prepared["dir"], gen_path, out / "kept.jsonl", out / "rejects.jsonl",
                                           tmp_path / "funnel.json", datacard=out / "datacard.md"), root=tmp_path)
    assert len(srv.requests) == 4  # judge and consistency, for both items
    assert {(b["model"], b["temperature"]) for b in srv.requests} == {("judge-model", 0)}
    assert funnel["teacher"]["model"] == "openai:judge-model" and funnel["teacher"]["requests"] == 4
    assert "- Judge and consistency checks asked `openai:judge-model`" in (out / "datacard.md").read_text()
    assert p.teacher.model == "fake-teacher" and p.filter_teacher().max_attempts == p.teacher.max_attempts



def test_judge_and_consistency_keep_what_the_thresholds_say_and_a_rerun_is_free(tmp_path, prepared, llm_steps,
                                                                                monkeypatch):
    t = prepared["train"]
    records = [item(t[0], "s5", "5"), item(t[1], "s4", "4", answer=t[1].final_decision.upper()), item(t[2], "s3", "3"), item(t[3], "s2", "2"),
               item(t[4], "wrong", "5", answer=other(t[4].final_decision)), item(t[5], "nojson", "garbage"),
               item(t[6], "fixed", "fix"), item(t[7], "noanswer", "4", answer="unsure"),
               Record(id="short", question="Why?", contexts=t[8].contexts, final_decision="yes", source="rewrite",
                      parent_id=t[8].id)]
    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        funnel, kept, rejects = run_filter(tmp_path, prepared["dir"], records, params(3))
        assert sorted(judged_questions(srv)) == sorted(r.question for r in records[:8])  # not the one validate dropped
        sent = len(srv.requests)
        funnel4, kept4, rejects4 = run_filter(tmp_path, prepared["dir"], records, params(4))
        assert len(srv.requests) == sent, "rerunning with another min_score must be served from the cache"

    assert [r.id for r in kept] == ["s5", "s4", "s3", "fixed"]
    assert {k: r["reject_reason"] for k, r in rejects.items()} == {
        "short": "too_short", "s2": "judge_low_score", "nojson": "judge_unscored", "wrong": "inconsistent",
        "noanswer": "consistency_unanswered"}
    assert funnel["steps"] == {
        "validate": {"in": 9, "out": 8, "dropped": {"too_short": 1}},
        "decontaminate": {"in": 8, "out": 8, "dropped": {}},
        "judge": {"in": 8, "out": 6, "dropped": {"judge_low_score": 1, "judge_unscored": 1}},
        "consistency": {"in": 6, "out": 4, "dropped": {"consistency_unanswered": 1, "inconsistent": 1}}}
    assert [r.id for r in kept4] == ["s5", "s4", "fixed"]
    assert rejects4["s3"]["reject_reason"] == "judge_low_score"
    assert funnel4["steps"]["judge"] == {"in": 8, "out": 5, "dropped": {"judge_low_score": 2, "judge_unscored": 1}}
    assert funnel4["steps"]["consistency"] == {"in": 5, "out": 3,
                                               "dropped": {"consistency_unanswered": 1, "inconsistent": 1}}
    for f in (funnel, funnel4):  # every item is kept or dropped by exactly one step
        chain = list(f["steps"].values())
        assert all(a["out"] == b["in"] for a, b in zip(chain, chain[1:]))
        assert all(s["in"] - s["out"] == sum(s["dropped"].values()) for s in chain)
        assert f["in"] == 9 == f["kept"] + sum(f["dropped"].values())

    # scores stay on kept and dropped records alike
    by_id = {r.id: r for r in kept}
    rubric = {"judge_rubric": RUBRIC}
    assert by_id["s5"].scores == {"judge": 5, **rubric, "consistency": t[0].final_decision}
    assert by_id["s4"].scores["consistency"] == t[1].final_decision  # "YES" read as "yes"
    assert by_id["fixed"].scores == {"judge": 4, **rubric, "consistency": t[6].final_decision}  # after the repair
    assert rejects["s2"]["scores"] == {"judge": 2, **rubric}
    assert rejects["wrong"]["scores"] == {"judge": 5, **rubric, "consistency": other(t[4].final_decision)}
    assert rejects["nojson"]["scores"] == {"judge_error": "not_json"}
    assert rejects["noanswer"]["scores"] == {"judge": 4, **rubric, "consistency_error": "bad_value_answer"}
    assert rejects4["s3"]["scores"] == {"judge": 3, **rubric}
    assert "scores" not in rejects["short"]


def test_a_failed_teacher_request_fails_the_step_or_when_accepted_keeps_the_item_unscored(
        tmp_path, prepared, llm_steps, monkeypatch):
    t = prepared["train"]
    records = [item(t[0], "ok", "5"), item(t[1], "down", "5", extra="[fail] ")]
    with FailingOn("[fail]", responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match=r"filter judge: 1 of 2 teacher requests failed.*\n  http_500: 1"):
            run_filter(tmp_path, prepared["dir"], records, params(3))
        assert srv.faults_served["500"] == 2  # teacher.max_attempts
        assert not (tmp_path / "filtered/kept.jsonl").exists()
        p = params(3)
        p.teacher.max_failed_share = 0.5
        funnel, kept, rejects = run_filter(tmp_path, prepared["dir"], records, p)
    assert [r.id for r in kept] == ["ok", "down"]  # a failure says nothing about the item
    assert kept[1].scores["judge_error"] == "teacher_error:http_500"
    assert funnel["steps"]["judge"] == {"in": 2, "out": 2, "dropped": {}}


def test_a_teacher_that_answers_nothing_stops_the_stage_with_the_cause(tmp_path, prepared, llm_steps, monkeypatch):
    t = prepared["train"]
    with OpenAIServer(responder, fault_rate=1.0, faults=("500",)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match=r"filter judge: 2 of 2 teacher requests failed.*\n  http_500: 2"):
            run_filter(tmp_path, prepared["dir"], [item(t[0], "a", "5"), item(t[1], "b", "4")], params(3))
    assert not (tmp_path / "filtered/kept.jsonl").exists()
