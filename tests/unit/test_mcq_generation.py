"""The teacher writes and checks multiple-choice items (issue 15, part 3): rewrite paraphrases a stem and reorders
its options, new and grounded write options with a correct letter and an explanation, the filter's rules, dedup and
decontamination read stems and options, judge and consistency see the options (consistency blind to the letter),
and the data card shows where each teacher put the answer. Against a real OpenAI-compatible server on 127.0.0.1
(`openai_server.ExamTeacher`) on the bundled MedQA-schema sample."""

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT
from medaug import filtering
from medaug.augment.generate import load_prompt, plan, run
from medaug.data import prepare
from medaug.data.schema import Record, read_records
from medaug.errors import MedaugError
from medaug.filtering.rules import check_valid
from medaug.filtering.steps import Context, decontaminate, dedup
from medaug.llm.structured import conform, fill, string_schema
from medaug.params import Params, parse_params
from openai_server import ExamTeacher, OpenAIServer

MEDQA = "src/medaug/tasks/medqa.yaml"
STEPS = ["validate", "dedup", "decontaminate", "judge", "consistency", "balance"]


def exam(generate=None, filter_=None) -> Params:
    return parse_params({
        "task": {"file": MEDQA},
        "teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 2,
                    "backoff_s": 0.01, "max_concurrency": 4},
        "generate": {"strategies": ["rewrite", "new"], "per_strategy": 24, "seed": 0,
                     "mesh": {"descriptors": ""}, **(generate or {})},  # the stages run under tmp_path: no tree file
        "filter": {"steps": STEPS, **(filter_ or {})},
        "train": {"variants": ["original", "augmented"]}}, ROOT)


def mc(rid: str, question: str, options: list[str], answer: str = "A", source: str = "original",
       contexts=(), parent_id=None) -> Record:
    return Record(id=rid, question=question, contexts=list(contexts), options=dict(zip("ABCD", options)),
                  final_decision=answer, source=source, parent_id=parent_id)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    teacher = ExamTeacher()
    with OpenAIServer(teacher) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture
def project(tmp_path, server):
    """The MedQA sample prepared, then generate run on it with rewrite and new."""
    p = exam()
    prepare.run(p, ROOT, tmp_path / "data/prepared", tmp_path / "metrics/prepare.json")
    out = tmp_path / "data/generated"
    metrics = run(p, tmp_path, tmp_path / "data/prepared", out / "generated.jsonl", out / "rejects.jsonl",
                  tmp_path / "metrics/generate.json")
    return {"root": tmp_path, "p": p, "metrics": metrics, "server": server,
            "generated": read_records(out / "generated.jsonl", list("ABCD")),
            "rejects": [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()],
            "train": {r.id: r for r in read_records(tmp_path / "data/prepared/train.jsonl")}}


# ---------------------------------------------------------------- generation


def test_rewrite_paraphrases_the_stem_and_reorders_the_options_the_answer_following_its_text(project):
    rewrites = [r for r in project["generated"] if r.source == "rewrite"]
    assert len(rewrites) == 24
    for r in rewrites:
        parent = project["train"][r.parent_id]
        assert r.question != parent.question and list(r.options) == list("ABCD")
        assert sorted(r.options.values()) == sorted(parent.options.values())
        assert list(r.options.values()) != list(parent.options.values())  # never the parent's order
        assert r.options[r.final_decision] == parent.options[parent.final_decision]
        assert r.long_answer == parent.long_answer and r.teacher["prompt_sha"] == load_prompt("rewrite_options")[1]
    # the reorder is the job's own (seeded by its id): the same on a rerun, spread over the letters
    again = {j.id: j.check({"question": "Where, then?"}) for j in plan(project["p"], list(project["train"].values()))
             if j.strategy == "rewrite"}
    assert all(again[r.id]["options"] == r.options for r in rewrites)
    assert len(Counter(r.final_decision for r in rewrites)) >= 3


def test_new_items_carry_options_a_letter_and_an_explanation_and_bad_options_go_back_for_repair(project):
    new = [r for r in project["generated"] if r.source == "new"]
    rejects = [x for x in project["rejects"] if x["strategy"] == "new"]
    assert len(new) + len(rejects) == 24 and rejects and new
    for r in new:
        assert set(r.options) == set("ABCD") and len(set(r.options.values())) == 4 and r.final_decision == "A"
        assert r.long_answer.startswith("Because of") and r.contexts == project["train"][r.parent_id].contexts == []
    # two identical options: rejected, after one repair request that got the same again
    assert {x["reason"] for x in rejects} == {"duplicate_options"} and all(len(x["replies"]) == 2 for x in rejects)
    prompts = [b["messages"][0]["content"] for b in project["server"].requests]
    new_prompt = next(q for q in prompts if q.startswith("Write a new exam question"))
    assert 'one option per letter ("A", "B", "C", "D")' in new_prompt and "Context:" not in new_prompt
    m = project["metrics"]
    assert m["labels"]["new"] == {"A": len(new), "B": 0, "C": 0, "D": 0}
    assert m["by_strategy"]["new"]["rejects"] == {"duplicate_options": len(rejects)}


def test_grounded_writes_standalone_exam_questions_that_keep_their_passage(tmp_path, server):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Glorps migrate to the ice caverns when the second moon rises.\n\n"
                                  "Snibbets feed at high noon and sleep through the dusk.\n")
    p = exam({"strategies": ["grounded"], "per_strategy": 0,
              "grounded": {"corpus": str(corpus), "chunk_tokens": 12, "overlap_tokens": 0}})
    prepare.run(p, ROOT, tmp_path / "prep", tmp_path / "prep.json")
    out = tmp_path / "gen"
    run(p, tmp_path, tmp_path / "prep", out / "g.jsonl", out / "r.jsonl", tmp_path / "m.json")
    recs = read_records(out / "g.jsonl", list("ABCD"))
    assert recs and all(r.source == "grounded" and r.options and r.parent_id is None and r.contexts
                        and r.contexts[0] in (corpus / "a.txt").read_text() for r in recs)


# ---------------------------------------------------------------- filtering


def test_the_filter_drops_exam_items_with_their_own_reasons_and_consistency_answers_blind(project):
    root = project["root"]
    out = root / "data/filtered"
    funnel = filtering.run(project["p"], root / "data/prepared", root / "data/generated/generated.jsonl",
                           out / "kept.jsonl", out / "rejects.jsonl", root / "metrics/funnel.json", root=root,
                           datacard_path=out / "datacard.md")
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
    prompts = [b["messages"][0]["content"] for b in project["server"].requests]
    assert any(q.startswith("Rate an exam question") for q in prompts)
    card = (out / "datacard.md").read_text()
    shas = {load_prompt(n)[1][:16] for n in ("rewrite_options", "new_options")}
    assert all(s in card for s in shas) and "| filter judge |" in card and "| filter consistency |" in card
    # where each teacher put the answer: rewrites spread over the letters, the new items all at A
    assert "| generated: new, `fake-teacher` |" in card and "**Letter bias:** `fake-teacher` put the answer at A" in card
    assert "in 0 of" not in card and card.count("**Letter bias:**") == 1


def test_rules_check_distinct_options_and_a_stem_that_gives_the_answer_away():
    p = Params().filter
    ok = mc("g", "Where does a glorp with blue fur live?", ["ice caverns", "lava fields", "marshes", "forests"])
    assert check_valid(ok, None, p) is None  # no context: an exam stem stands alone
    assert check_valid(mc("g", ok.question, ["Iron.", "iron", "zinc", "copper"]), None, p) == "duplicate_options"
    assert check_valid(mc("g", "Glorps live in ice caverns; where does a glorp live?", list(ok.options.values())),
                       None, p) == "answer_in_stem"
    # the stem names the answer and a distractor: not a giveaway
    both = mc("g", "Ice caverns or lava fields: where does a glorp live?", list(ok.options.values()))
    assert check_valid(both, None, p) is None
    label = Record(id="y", question="Does aspirin lower stroke risk?", contexts=[""], final_decision="yes")
    assert check_valid(label, None, p) == "empty_context"


def test_dedup_reads_stem_and_options_and_reordered_options_are_the_same_item():
    stem = "A glorp kept by Quib on Ombra has blue fur and hums. Where does it live?"
    texts = ["ice caverns", "lava fields", "floating marshes", "crystal forests"]
    train = [mc("t", stem, texts)]
    gen = [mc("g1", stem, texts[::-1], "D", "rewrite", parent_id="t"),  # only reordered
           mc("g2", stem, ["red", "green", "blue", "white"], "B", "new", parent_id="t"),  # other options
           mc("g3", "Which colour is a glorp's fur?", ["red", "green", "blue", "white"], "C", "new"),
           mc("g4", "Which colour is a glorp's fur?", ["white", "blue", "green", "red"], "B", "new")]
    ctx = Context(Params(), Path("."), train, [], [])
    # g4 is g3 reordered (another answer letter, yet the same item); g2 shares the stem but asks about other options
    assert dedup(gen, ctx) == {"g1": "duplicate_of_train", "g4": "near_duplicate"}


def test_decontamination_reads_the_options_too():
    test = [mc("x", "What do snibbets eat?", ["glowing moss from the northern caves of Vellomar", "stones", "rain",
                                              "nothing"])]
    gen = [mc("g", "Which food suits a snibbet best?", ["glowing moss from the northern caves of Vellomar", "sand",
                                                         "salt", "snow"], source="new"),
           mc("h", "Which food suits a glorp best?", ["moss", "sand", "salt", "snow"], source="new")]
    ctx = Context(Params(), Path("."), [], [], test)
    assert decontaminate(gen, ctx) == {"g": "test_overlap"}


# ---------------------------------------------------------------- params, prompts, replies


def test_an_exam_task_refuses_mesh_and_label_mix_and_takes_the_rest():
    assert exam().generate.strategies == ["rewrite", "new"]
    with pytest.raises(MedaugError, match="mesh, which picks parents by their MeSH headings"):
        exam({"strategies": ["new", "mesh"]})
    with pytest.raises(MedaugError, match="generate.label_mix is for label tasks"):
        exam({"label_mix": {"A": 1}})


def test_fill_is_one_pass_and_drops_the_context_line_of_a_standalone_stem():
    template = "Context: {context}\nQuestion: {question}\n{options}\nReply: {\"answer\": \"A\"}\n"
    assert fill(template, {"context": "", "question": "Q {context}?", "options": "A. x"}) == \
        'Question: Q {context}?\nA. x\nReply: {"answer": "A"}'
    assert fill(template, {"context": "c", "question": "Q?", "options": ""}).startswith("Context: c\nQuestion: Q?")


def test_an_enum_reply_is_read_in_any_case_and_spelled_as_the_enum_spells_it():
    letters = string_schema("answer", enums={"answer": list("ABCD")})
    assert conform({"answer": " b "}, letters) == {"answer": "B"}
    assert conform({"answer": "E"}, letters) == "bad_value_answer"
    labels = string_schema("answer", enums={"answer": ["yes", "no", "maybe"]})
    assert conform({"answer": "Yes"}, labels) == {"answer": "yes"}
