"""Progressive questions (issue 15, part 4; MQG/ECN-QA): a case asked as a chain of questions, each step revealing
more of it. The teacher's chains are checked step by step and rejected whole; the filter keeps or drops chains
whole; recipes take them whole; training and scoring show each step with the earlier steps and their answers;
evaluation reports accuracy per step and the share of chains entirely right. (The generate stage against the HTTP
test teacher: tests/integration/test_progressive.py; the whole DAG: tests/test_progressive.py, the dag tier; the
loader and the bundled sample: tests/unit/test_progressive_data.py.)"""

import json

import pytest

from medaug import filtering
from medaug.augment import strategies
from medaug.augment.strategies.base import Job, load_prompt
from support.strategies import check
from medaug.data import prepare
from medaug.data.schema import Record, read_records, write_records
from medaug.data.variants import select
from medaug.errors import MedaugError
from medaug.evaluate.metrics import chain_metrics
from medaug.evaluate.task import encode, render_prompt
from medaug.models.load import load_model_and_tokenizer
from medaug.params import VariantParams, parse_params
from medaug.paths import FilterIO
from support.paths import ROOT
from support.progressive import params

CASE = Record(id="case-3", question="What should the keeper do next?", options={"A": "a", "B": "b", "C": "c",
              "D": "d"}, final_decision="A", contexts=["A glorp sneezes sparks. Its water turns gold. It is cured."])


def reply(steps: int = 3, **override: str) -> dict[str, str]:
    out = {}
    for n in range(1, steps + 1):
        out |= {f"reveal{n}": f"Finding number {n} is seen.", f"question{n}": f"Which sign shows at stage {n}?",
                **{f"{x}{n}": f"sign {x.lower()}{n}" for x in "ABCD"}, f"answer{n}": "ABCD"[n % 4]}
    return out | override


def chain(cid: str, questions: list[str], parent: Record, source: str = "progressive", **kw) -> list[Record]:
    """A generated chain of len(questions) steps on `parent`, as generate writes one."""
    history, out = [], []
    for n, q in enumerate(questions, 1):
        options = {x: f"{cid} option {x} {n}" for x in "ABCD"}
        out.append(Record(id=f"{cid}-{n}", question=q, contexts=[f"Reveal {k} of {cid}." for k in range(1, n + 1)],
                          options=options, final_decision="B", source=source, parent_id=parent.id,
                          chain={"id": cid, "step": n, "steps": len(questions)}, history=list(history),
                          teacher={"model": "m", "prompt_sha": "p", "request_sha": f"{cid}-{n}"}, **kw))
        history.append({"question": q, "answer": options["B"]})
    return out


# ---------------------------------------------------------------- params

@pytest.mark.parametrize("task, why", [({}, "answers with labels"),
                                       ({"file": "src/medaug/tasks/medqa.yaml"}, "has no {history} in its template")])
def test_progressive_needs_an_options_task_with_history(task, why):
    with pytest.raises(MedaugError, match=rf"generate.strategies has progressive.*{why}.*tasks/progressive.yaml"):
        strategies.check(parse_params({"task": task, "generate": {"strategies": ["progressive"]},
                                       "filter": {"steps": ["validate", "dedup", "decontaminate"]}}, ROOT))
    with pytest.raises(MedaugError, match=r"generate.progressive.steps must be 2 to 8"):
        params(progressive={"steps": 1})


# ---------------------------------------------------------------- the teacher's chains

def test_a_good_reply_becomes_a_chain_with_the_case_so_far_and_the_earlier_answers():
    job = Job("progressive", CASE, *load_prompt("progressive_options"), letters=tuple("ABCD"), steps=3)
    assert job.schema["required"][:7] == ["reveal1", "question1", "A1", "B1", "C1", "D1", "answer1"]
    assert job.schema["properties"]["answer3"]["enum"] == list("ABCD") and len(job.schema["required"]) == 21
    prompt = job.prompt()
    assert "exam case of 3 steps" in prompt and '"reveal3", "question3", "A3"' in prompt and CASE.context in prompt
    steps = job.check(reply())["chain"]
    assert [s["chain"] for s in steps] == [{"id": job.id, "step": n, "steps": 3} for n in (1, 2, 3)]
    assert steps[2]["contexts"] == ["Finding number 1 is seen.", "Finding number 2 is seen.",
                                    "Finding number 3 is seen."]
    assert steps[2]["history"] == [{"question": "Which sign shows at stage 1?", "answer": "sign b1"},
                                   {"question": "Which sign shows at stage 2?", "answer": "sign c2"}]
    assert steps[0]["history"] == [] and [s["final_decision"] for s in steps] == ["B", "C", "D"]


@pytest.mark.parametrize("override, reason", [
    ({"reveal2": " "}, "empty_reveal"),
    ({"question3": "Name the sign."}, "no_question"),
    ({"C2": "Sign B2."}, "duplicate_options"),
    ({"D1": ""}, "empty_option"),
    ({"question3": "Which sign shows at stage 1?"}, "repeated_question"),
])
def test_one_bad_step_rejects_the_whole_chain(override, reason):
    assert check("progressive", reply(**override), CASE, "", letters="ABCD", steps=3) == reason


# ---------------------------------------------------------------- filter and recipes act on whole chains

def test_a_contaminated_step_drops_its_chain_and_only_it(tmp_path):
    p = params()
    prepare.run(p, ROOT, tmp_path / "prepared", tmp_path / "prepare.json")
    train = read_records(tmp_path / "prepared/train.jsonl")
    test = read_records(tmp_path / "prepared/test.jsonl")
    clean = chain("c1", ["Which glow does the orb give at dawn?", "How far does the orb roll by noon?",
                         "What colour is the orb at dusk?"], train[0])
    leaky = chain("c2", ["Which song does the lake sing?", test[4].question, "Where does the lake go in winter?"],
                  train[3])
    short = chain("c3", ["Which?", "Which stone hums the loudest tune?"], train[6])  # step 1 too short
    write_records(tmp_path / "gen.jsonl", clean + leaky + short)
    out = tmp_path / "filtered"
    funnel = filtering.run(p, FilterIO(tmp_path / "prepared", tmp_path / "gen.jsonl", out / "kept.jsonl",
                                       out / "rejects.jsonl", tmp_path / "funnel.json"))
    kept = read_records(out / "kept.jsonl")
    rejects = {r["id"]: (r["reject_step"], r["reject_reason"])
               for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert [r.id for r in kept] == ["c1-1", "c1-2", "c1-3"]
    assert rejects == {"c2-2": ("decontaminate", "test_question"), "c2-1": ("chains", "chain_dropped"),
                       "c2-3": ("chains", "chain_dropped"), "c3-1": ("validate", "too_short"),
                       "c3-2": ("chains", "chain_dropped")}
    assert funnel["steps"]["chains"] == {"in": 6, "out": 3, "dropped": {"chain_dropped": 3}}
    assert funnel["in"] == 8 and funnel["kept"] == 3 and funnel["dropped"]["chain_dropped"] == 3


def test_recipes_take_or_leave_chains_whole():
    parent = Record(id="p", question="q?", contexts=["c"], final_decision="A")
    chains = [chain(f"c{i}", [f"Question {k} of chain {i}?" for k in range(3)], parent) for i in range(10)]
    kept = [r for c in chains for r in c]
    for fraction in (0.3, 0.5, 0.7):
        got = select(VariantParams(strategies=["progressive"], fraction=fraction, seed=1), kept)
        assert len(got) == 3 * round(10 * fraction) and all(len([r for r in got if r.unit == r2.unit]) == 3
                                                             for r2 in got)
    assert [r.id for r in select(VariantParams(strategies=["progressive"], max_items=8), kept)] == \
        [r.id for r in kept[:6]]  # a third chain would be cut at 8: it is left out
    kept[4].scores = {"judge": 2}  # chain c1's step 2
    for r in kept:
        r.scores = r.scores or {"judge": 5}
    got = select(VariantParams(strategies=["progressive"], min_judge_score=4), kept)
    assert {r.unit for r in got} == {f"c{i}" for i in range(10)} - {"c1"} and len(got) == 27


# ---------------------------------------------------------------- training and scoring see the earlier steps

def test_each_step_is_shown_with_the_earlier_steps_and_their_answers(tiny_cache):
    p = params()
    steps = chain("c", ["Which glow does the orb give?", "How far does it roll?", "What colour is it at dusk?"],
                  CASE)
    text = render_prompt(steps[2], p.task)
    assert text.startswith("Case: Reveal 1 of c. Reveal 2 of c. Reveal 3 of c.\n"
                           "Earlier question: Which glow does the orb give?\nIts answer: c option B 1\n"
                           "Earlier question: How far does it roll?\nIts answer: c option B 2\n"
                           "Question: What colour is it at dusk?\nA. c option A 3\n")
    assert "Earlier question" not in render_prompt(steps[0], p.task)
    _, tokenizer = load_model_and_tokenizer("tiny-llama")
    ex = encode(tokenizer, steps[2], p.task, " B")
    assert "Its answer: c option B 2" in tokenizer.decode(ex["input_ids"][:ex["n_prompt"]])


def test_chains_are_scored_per_step_and_whole():
    parent = Record(id="p", question="q?", contexts=["c"], final_decision="A")
    records = chain("a", ["Q1?", "Q2?", "Q3?"], parent) + chain("b", ["Q1?", "Q2?", "Q3?"], parent) + \
        chain("c", ["Q1?", "Q2?"], parent)
    preds = ["B", "B", "B",  "B", "A", "B",  "A", "B"]  # a all right; b wrong at 2; c wrong at 1
    assert chain_metrics(records, preds) == {"n": 3, "all_right": 1 / 3,
                                             "per_step": {"1": 2 / 3, "2": 2 / 3, "3": 1.0}}
