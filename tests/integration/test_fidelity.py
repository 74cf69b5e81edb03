"""Rewrite fidelity (issue 35): rewrites that flip their parent's meaning (a negation, exposure and outcome swapped)
keep the parent's label, which is then wrong. The `fidelity` step asks the teacher, against a real OpenAI-compatible
server on 127.0.0.1 whose answers come from a rule, and drops exactly the flipped ones; the MiniLM cosine it notes
beside them is shown for what it is: it cannot tell them apart."""

import json
import re

import pytest

from medaug.data.schema import Record
from medaug.filtering.llm_checks import fidelity
from medaug.filtering.steps import Context
from medaug.params import parse_params
from support.openai_server import OpenAIServer

PAIRS = [("aspirin", "stroke"), ("statins", "dementia"), ("exercise", "depression")]  # exposure, outcome
NEGATIONS = {"not", "no", "never"}
CONTEXT = ["A cohort study of 2,000 adults followed for five years.", "Outcomes were recorded yearly."]
PARENTS = {"p1": "Does aspirin reduce stroke risk in older adults?",
           "p2": "Do statins lower the incidence of dementia?",
           "p3": "Does regular exercise relieve depression in teenagers?"}
FAITHFUL = {"p1": "In older adults, does aspirin reduce the risk of stroke?",
            "p2": "Do statins reduce how often dementia occurs?",
            "p3": "Does regular exercise ease depression among teenagers?"}
FLIPPED = {"p1": "Does aspirin not reduce stroke risk in older adults?",   # negated
           "p2": "Do statins not lower the incidence of dementia?",        # negated
           "p3": "Does depression relieve regular exercise in teenagers?"}  # exposure and outcome swapped


def rule(prompt: str) -> str:
    """The fake teacher's fidelity rule: B asks what A asks unless it negates where A does not, or names A's
    outcome before its exposure."""
    assert prompt.startswith("Two questions about the same biomedical abstract"), prompt[:60]
    task = prompt.rsplit("### Task", 1)[1]
    assert "answer" not in task.lower().replace("same answer", ""), "the prompt must not show the label"
    a, b = (re.search(rf"^Question {x}: (.*)$", task, re.MULTILINE).group(1).lower() for x in "AB")
    negated = len(NEGATIONS & set(re.findall(r"\w+", a))) != len(NEGATIONS & set(re.findall(r"\w+", b)))
    exposure, outcome = next((x, y) for x, y in PAIRS if x in a)
    swapped = b.index(outcome) < b.index(exposure)
    return json.dumps({"same": "no" if negated or swapped else "yes"})


def record(rid: str, question: str, parent: str | None = None, label: str = "yes") -> Record:
    return Record(id=rid, question=question, contexts=CONTEXT, final_decision=label, long_answer="x",
                  source="rewrite" if parent else "original", parent_id=parent,
                  teacher={"model": "m", "prompt_sha": "p", "request_sha": rid} if parent else None)


def test_fidelity_drops_exactly_the_rewrites_that_change_the_question_and_cosine_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    p = parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 2,
                                  "backoff_s": 0.01}})
    parents = [record(pid, q) for pid, q in PARENTS.items()]
    rewrites = ([record(f"{pid}-faithful", q, pid) for pid, q in FAITHFUL.items()]
                + [record(f"{pid}-flipped", q, pid) for pid, q in FLIPPED.items()])
    new = Record(id="n1", question="Is stroke rarer with aspirin?", contexts=CONTEXT, final_decision="yes",
                 source="new", parent_id="p1", teacher={"model": "m", "prompt_sha": "p", "request_sha": "n1"})
    with OpenAIServer(rule) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        drops = fidelity(rewrites + [new], Context(p, tmp_path, parents, [], []))
    assert drops == {f"{pid}-flipped": "unfaithful_rewrite" for pid in PARENTS}
    assert len(srv.requests) == len(rewrites)  # rewrites only: a `new` item has no question to be faithful to
    assert new.scores is None
    assert {r.id: r.scores["fidelity"] for r in rewrites} == {r.id: "no" if "flipped" in r.id else "yes"
                                                               for r in rewrites}
    # the embedding score, noted on every rewrite, does not see a negation: a flipped question sits as close to
    # its parent as a faithful paraphrase does, so no cosine threshold keeps the one and drops the other
    cos = {r.id: r.scores["fidelity_cosine"] for r in rewrites}
    faithful = [cos[f"{pid}-faithful"] for pid in PARENTS]
    negated = [cos["p1-flipped"], cos["p2-flipped"]]
    assert min(negated) > 0.9 and max(negated) >= min(faithful), cos
    print("fidelity cosine (parent vs rewrite):", json.dumps(cos))


@pytest.mark.parametrize("reply, reason", [("I think they match.", "fidelity_unscored")])
def test_a_fidelity_reply_that_is_no_verdict_drops_the_rewrite_unchecked(tmp_path, monkeypatch, reply, reason):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    p = parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 1,
                                  "repair_attempts": 0}})
    rewrite = record("r", FAITHFUL["p1"], "p1")
    with OpenAIServer(lambda prompt: reply) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        drops = fidelity([rewrite], Context(p, tmp_path, [record("p1", PARENTS["p1"])], [], []))
    assert drops == {"r": reason} and rewrite.scores["fidelity_error"]
