"""The few-shot teacher baseline (evaluate-teacher): a run against a real OpenAI-compatible server on 127.0.0.1 (with
injected 429/500 faults) scored like the candidates. Parsing, shots and prompt: tests/unit/test_teacher_baseline.py."""

import json
import re
from collections import Counter

import pytest

from medaug.data.schema import LABELS, Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate import teacher_baseline as tb
from medaug.evaluate.teacher_baseline import pick_shots
from medaug.params import parse_params
from medaug.paths import TeacherIO
from support.openai_server import OpenAIServer
from support.records import train_records

KEY = "sk-test-DO-NOT-LEAK-7f3a9c"


# --- a run against the real server ----------------------------------------------------------------------------

# question -> (gold, how the responder replies); right: the gold label, wrong: another one
CASES = [
    ("yes", "json_right"), ("no", "json_right"), ("maybe", "json_right"), ("yes", "json_wrong"),
    ("no", "fenced_right"), ("yes", "chatter_right"), ("maybe", "chatter_right"), ("no", "chatter_wrong"),
    ("maybe", "garbage"), ("yes", "fix"), ("no", "json_right"), ("maybe", "json_wrong"),
]
CORRECT = sum(mode.endswith("right") or mode == "fix" for _, mode in CASES)  # 8 of 12


def other(label):
    return "no" if label == "yes" else "yes"


def cases():
    return [Record(id=f"{1000 + i}", question=f"Case {i}: does treatment {i} help [{mode}]?",
                   contexts=[f"We studied treatment {i} in {10 + i} patients."], final_decision=gold)
            for i, (gold, mode) in enumerate(CASES)]


def responder(prompt):
    task = prompt.rsplit("### Task", 1)[1]
    q = re.search(r"^Question: (.*)$", task, re.MULTILINE).group(1)
    i, mode = re.search(r"Case (\d+): .*?\[(\w+)\]", q).groups()
    gold = CASES[int(i)][0]
    repair = "could not be used" in task
    return {"json_right": json.dumps({"answer": gold}),
            "json_wrong": json.dumps({"answer": other(gold)}),
            "fenced_right": f'```json\n{{"answer": "{gold.capitalize()}"}}\n```',
            "chatter_right": f"Answer: **{gold.capitalize()}**, because the abstract says so.",
            "chatter_wrong": f"I would say {other(gold)}.",
            "garbage": "I cannot tell from this abstract.",
            "fix": json.dumps({"answer": gold}) if repair else "Let me think about it.",
            }[mode]


class FailingOn(OpenAIServer):
    """Answers 500 to every prompt whose task holds `marker`; other prompts get the seeded random faults."""

    def __init__(self, marker, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def _fault(self, prompt, attempt):
        return "500" if self.marker in prompt.rsplit("### Task", 1)[-1] else super()._fault(prompt, attempt)


def params(cache="cache/teacher.sqlite", **teacher):
    return parse_params({
        "teacher": {"backend": "local", "model": "not-this-one", "cache": cache},
        "evaluate": {"teacher_shots": 3, "bootstrap": 200, "seed": 0,
                     "teacher": {"backend": "openai", "model": "fake-gpt", "timeout_s": 2, "max_attempts": 6,
                                 "backoff_s": 0.01, "max_concurrency": 4, **teacher}}})


def run(root, p, records, mlflow_root=None):
    write_records(root / "data/train.jsonl", train_records())
    write_records(root / "data/test.jsonl", records)
    return tb.run(p, root, TeacherIO(root / "data/test.jsonl", root / "eval/teacher", root / "metrics/teacher.json",
                                     root / "plots/confusion/teacher.json", root / "plots/per_class/teacher.json",
                                     root / "data/train.jsonl"), mlflow_root=mlflow_root)


def test_run_scores_the_teacher_like_a_candidate_and_a_rerun_is_free(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    logged = []
    monkeypatch.setattr(tb, "log_stage", lambda root, stage, prm, met: logged.append((stage, prm, met)))
    records, p = cases(), params()
    with OpenAIServer(responder, fault_rate=0.3, faults=("429_retry_after", "429", "500"), seed=3,
                      retry_after_s=0.02) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        metrics = run(tmp_path, p, records, mlflow_root=tmp_path)
        assert srv.faults_served["500"] and srv.faults_served["429"] + srv.faults_served["429_retry_after"]
        first = [b["messages"] for b in srv.requests if len(b["messages"]) == 1]
        repairs = [b["messages"] for b in srv.requests if len(b["messages"]) > 1]
        faults = Counter(prompt for prompt, _, _ in srv.fault_log)
        sends = Counter(m[0]["content"] for m in first)
        assert len(sends) == len(records)
        assert all(n == 1 + faults[prompt] for prompt, n in sends.items())  # each question once, plus retries
        assert {re.search(r"\[(\w+)\]\?\nReply:$", m[0]["content"]).group(1) for m in repairs} == {"garbage", "fix"}
        assert all(b["model"] == "fake-gpt" and b.get("response_format") for b in srv.requests)
        sent = len(srv.requests)
        again = run(tmp_path, p, records)
        assert len(srv.requests) == sent, "a rerun must be served from the request cache"
    assert (tmp_path / "cache/teacher.sqlite").exists()

    assert metrics["accuracy"] == pytest.approx(CORRECT / len(records)) == again["accuracy"]
    assert metrics["n"] == 12 and metrics["unparsed"] == 1 and metrics["unparsed_reasons"] == {"no_label": 1}
    assert metrics["model"] == "fake-gpt" and metrics["variant"] == "teacher-3-shot"
    shots = pick_shots(train_records(), 3, 0)
    assert metrics["shots"] == [s.id for s in shots]
    assert {"macro_f1", "per_class", "ci95"} <= set(metrics)
    assert metrics["ci95"]["accuracy"]["low"] <= metrics["accuracy"] <= metrics["ci95"]["accuracy"]["high"]
    assert metrics["usage"]["requests"] == 14 and metrics["usage"]["failed"] == 0
    assert again["usage"]["cache_hits"] == again["usage"]["requests"] == 14 and again["usage"]["sent"] == 0
    assert json.loads((tmp_path / "metrics/teacher.json").read_text()) == again  # the last run's

    rows = [json.loads(line) for line in (tmp_path / "eval/teacher/predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert sum(r["prediction"] == r["gold"] for r in rows) == CORRECT
    garbage = rows[8]
    assert garbage["prediction"] == "unparsed" and garbage["reason"] == "no_label" and garbage["reply"]
    assert rows[9]["prediction"] == "yes" and json.loads(rows[9]["reply"]) == {"answer": "yes"}  # repaired
    official = json.loads((tmp_path / "eval/teacher/predictions.json").read_text())
    assert official == {r["id"]: r["prediction"] for r in rows}
    confusion = json.loads((tmp_path / "plots/confusion/teacher.json").read_text())
    assert confusion == [{"actual": r["gold"], "predicted": r["prediction"]} for r in rows]
    per_class = json.loads((tmp_path / "plots/per_class/teacher.json").read_text())
    assert [row["class"] for row in per_class] == list(LABELS)
    assert set(per_class[0]) == {"class", "precision", "recall", "f1"}

    (stage, logged_params, logged_metrics), = logged
    assert stage == "evaluate-teacher" and logged_metrics == metrics
    assert logged_params["teacher"]["model"] == "fake-gpt" and logged_params["evaluate"]["teacher_shots"] == 3
    assert KEY not in json.dumps(logged_params)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_failed_requests_are_never_scored_and_a_dead_endpoint_stops_with_the_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    records = cases()[:3]
    records[1].question += " [down]"
    with FailingOn("[down]", responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match=r"evaluate-teacher: 1 of 3 teacher requests failed"):
            run(tmp_path, params(max_attempts=2), records)
        assert srv.faults_served["500"] == 2  # max_attempts
        metrics = run(tmp_path, params(max_attempts=2, max_failed_share=0.5), records)
        assert metrics["unparsed"] == 0 and metrics["teacher_failed"] == 1 and metrics["n"] == 2
        assert metrics["accuracy"] == pytest.approx(1.0)  # the failed question is not scored as wrong
        for r in records:
            r.question += " [down]"
        with pytest.raises(MedaugError, match=r"3 of 3 teacher requests failed.*\n  http_500: 3"):
            run(tmp_path / "dead", params(max_attempts=1), records)
    assert not (tmp_path / "dead/metrics").exists()
