"""Generation strategies beyond rewrite/new: label targets (`generate.label_mix`), passages of a user corpus
(`grounded`), MeSH-balanced parents (`mesh`), and all of them mixed in one run, against a real OpenAI-compatible
server on 127.0.0.1 whose responder follows each prompt (and misbehaves where a test says so). Params, quotas,
chunking and MeSH sampling in process: tests/unit/test_generate_strategies.py."""

import json
from collections import Counter
from pathlib import Path

import pytest

from medaug import filtering
from medaug.augment import grounded
from medaug.augment.generate import dry_run, plan, run
from medaug.augment.strategies.base import load_prompt
from medaug.data import prepare
from medaug.data.schema import Record, read_records, write_records
from medaug.params import Params
from medaug.paths import FilterIO, GenerateIO
from support.openai_server import OpenAIServer
from support.paths import ROOT
from support.strategies import check, make_train, params, responder, task_field, write_corpus


@pytest.fixture
def strategy_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def generate(root: Path, p: Params, prepared_dir: Path | None = None) -> tuple[dict, list[Record], list[dict]]:
    out = root / "data/generated"
    m = run(p, root, GenerateIO(prepared_dir or root / "data/prepared", out / "generated.jsonl",
                                out / "rejects.jsonl", root / "metrics/generate.json"))
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    return m, read_records(out / "generated.jsonl"), rejects


def test_label_mix_sets_the_labels_of_rewrites_and_new_questions(tmp_path, strategy_server):
    # 14 yes, 8 no, 2 maybe: a skewed train split, as PubMedQA's (552 / 338 / 110)
    write_records(tmp_path / "data/prepared/train.jsonl", make_train("yn" * 8 + "y" * 6 + "mm"))
    mix = {"yes": 1, "no": 1, "maybe": 2}
    m, recs, rejects = generate(tmp_path, params(per_strategy=12, label_mix=mix))
    assert m["labels"] == {"rewrite": {"yes": 3, "no": 3, "maybe": 6}, "new": {"yes": 3, "no": 3, "maybe": 6}}
    assert rejects == [] and m["generated"] == 24
    # rewrite: the 2 maybe parents are asked 3 times each, as samples 0, 1, 2 (another seed, another cache entry)
    maybe = sorted(r.id for r in recs if r.source == "rewrite" and r.final_decision == "maybe")
    assert maybe == sorted(f"{pid}-rewrite-{s}" for pid in ("2022", "2023") for s in range(3))
    rewrite_seeds = Counter(b["seed"] for b in strategy_server.requests
                            if "Rewrite the research" in b["messages"][0]["content"])
    assert rewrite_seeds == {0: 8, 1: 2, 2: 2}
    # new: each prompt names its target, asked with new_target.txt, and the record carries that label
    targets_asked = Counter(task_field(b["messages"][0]["content"], "Answer") for b in strategy_server.requests
                            if "whose answer is the answer given" in b["messages"][0]["content"])
    assert targets_asked == {"yes": 3, "no": 3, "maybe": 6}
    assert {r.teacher["prompt_sha"] for r in recs if r.source == "new"} == {load_prompt("new_target")[1]}
    # deterministic: the same seed asks for the same items again (all cached), another seed for others
    sent = len(strategy_server.requests)
    m2, recs2, _ = generate(tmp_path, params(per_strategy=12, label_mix=mix))
    assert [r.id for r in recs2] == [r.id for r in recs] and len(strategy_server.requests) == sent
    est = dry_run(params(per_strategy=12, label_mix=mix), tmp_path, tmp_path / "data/prepared")
    assert (est["requests"], est["to_send"]) == (24, 0)  # the dry run asks for the same samples
    _, recs3, _ = generate(tmp_path, params(per_strategy=12, label_mix=mix, seed=1))
    assert {r.id for r in recs3 if r.source == "new"} != {r.id for r in recs if r.source == "new"}


def test_a_reply_with_another_label_is_off_target_and_repaired_once(tmp_path, monkeypatch):
    write_records(tmp_path / "data/prepared/train.jsonl", make_train("ynm" * 4))

    def stubborn(prompt):
        reply = json.loads(responder(prompt))
        if "trial 0." in prompt or ("trial 1." in prompt and "could not be used" not in prompt):
            reply["answer"] = "no" if reply["answer"] != "no" else "yes"  # trial 1 obeys once told
        return json.dumps(reply)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(stubborn) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m, recs, rejects = generate(tmp_path, params(strategies=["new"], per_strategy=0,
                                                     label_mix={"yes": 1, "no": 1, "maybe": 1}))
    assert m["rejects"] == {"off_target": 1} and m["repaired"] == 1 and m["generated"] == 11
    (rej,) = rejects
    assert rej["parent_id"] == "2000" and rej["reason"] == "off_target" and len(rej["replies"]) == 2
    assert json.loads(rej["replies"][0])["answer"] != rej["target"]
    repairs = [b["messages"][2]["content"] for b in srv.requests if len(b["messages"]) == 3]
    assert len(repairs) == 2 and all(x.startswith("That reply could not be used: off target.") for x in repairs)
    assert check("new", {"question": "Is it?", "answer": "yes", "explanation": ""}, recs[0], target="no") \
        == "off_target"
    assert check("rewrite", {"question": "Is it so?"}, recs[0], target="no")["final_decision"] == \
        recs[0].final_decision  # a rewrite keeps its parent's label: targets steer which parents


# --- grounded: generation and filtering ---------------------------------------------------------------------------


@pytest.fixture
def prepared_dir(tmp_path):
    """The bundled synthetic sample, prepared (train/dev/test) in tmp_path/data/prepared."""
    out = tmp_path / "data/prepared"
    prepare.run(Params(), ROOT, out, tmp_path / "metrics/prepare.json")
    return out


def filter_generated(root: Path, prepared_dir: Path) -> dict:
    p = Params()
    p.filter.steps = ["validate", "dedup", "decontaminate"]
    out = root / "data/filtered"
    return filtering.run(p, FilterIO(prepared_dir, root / "data/generated/generated.jsonl", out / "kept.jsonl",
                                     out / "rejects.jsonl", root / "metrics/funnel.json"), root=root)


def test_grounded_records_keep_their_passage_and_pointer_and_pass_filtering(tmp_path, prepared_dir, strategy_server):
    corpus = write_corpus(tmp_path / "corpus")
    p = params(strategies=["grounded"], per_strategy=0, grounded={"corpus": "corpus", "chunk_tokens": 20,
                                                                  "overlap_tokens": 4})
    m, recs, rejects = generate(tmp_path, p)
    passages = {f"{s.file}#{s.chunk}": s for s in grounded.read_corpus(corpus, 20, 4)}
    assert m["generated"] == len(recs) == len(passages) == 7 and rejects == []
    sha = load_prompt("grounded")[1]
    for r in recs:
        s = passages[r.id.removesuffix("-grounded-0")]
        assert r.source == "grounded" and r.parent_id is None and r.contexts == [s.text] and r.meshes == []
        assert r.teacher["grounding"] == s.pointer and r.teacher["prompt_sha"] == sha
    prompts = [b["messages"][0]["content"] for b in strategy_server.requests]
    assert all(task_field(q, "Passage") in {s.text for s in passages.values()} for q in prompts)
    # a record grounded in a corpus has no parent in the prepared data, and passes the rule-based filters
    funnel = filter_generated(tmp_path, prepared_dir)
    assert funnel["kept"] == 7 and funnel["by_source"] == {"grounded": {"in": 7, "kept": 7, "dropped": {}}}
    # per_strategy picks passages at random, the same ones for the same seed
    p3 = params(strategies=["grounded"], per_strategy=3, grounded={"corpus": str(corpus), "chunk_tokens": 20,
                                                                   "overlap_tokens": 4})
    ids = [j.item.id for j in plan(p3, [])]
    assert len(ids) == 3 and ids == [j.item.id for j in plan(p3, [], Path("/elsewhere"))]  # absolute path
    assert set(ids) <= set(passages)


# --- mixing -------------------------------------------------------------------------------------------------------


def test_every_strategy_in_one_run_each_record_names_its_strategy_and_the_set_passes_filtering(
        tmp_path, prepared_dir, strategy_server):
    corpus = write_corpus(tmp_path / "corpus")
    p = params(strategies=["rewrite", "new", "grounded", "mesh"], per_strategy=5,
               label_mix={"yes": 1, "no": 1, "maybe": 1}, grounded={"corpus": str(corpus), "chunk_tokens": 20,
                                                                                  "overlap_tokens": 4},
               mesh={"descriptors": ""})  # no tree file under tmp_path: balance headings
    m, recs, rejects = generate(tmp_path, p)
    assert m["requested"] == 20 and rejects == []
    assert {s: c["generated"] for s, c in m["by_strategy"].items()} == {"rewrite": 5, "new": 5, "grounded": 5,
                                                                        "mesh": 5}
    shas = {s: load_prompt(s)[1] for s in ("rewrite", "new_target", "grounded", "mesh")}
    train = {r.id: r for r in read_records(prepared_dir / "train.jsonl")}
    for r in recs:
        assert r.id.split("-")[-2] == r.source  # <item>-<strategy>-<sample>
        assert r.teacher["prompt_sha"] == shas["new_target" if r.source == "new" else r.source]
        if r.source == "grounded":
            assert r.parent_id is None and set(r.teacher["grounding"]) >= {"file", "chunk"}
        else:
            assert r.parent_id in train and r.contexts == train[r.parent_id].contexts
        if r.source == "mesh":
            assert r.teacher["heading"] in r.meshes and r.teacher["heading"] in r.question
    # 5 = 2 yes + 2 no + 1 maybe (largest remainder, ties in label order), for rewrite and for new
    assert Counter(r.final_decision for r in recs if r.source in ("rewrite", "new")) == {"yes": 4, "no": 4,
                                                                                         "maybe": 2}
    funnel = filter_generated(tmp_path, prepared_dir)
    assert set(funnel["by_source"]) == {"rewrite", "new", "grounded", "mesh"}
    assert all(funnel["by_source"][s]["kept"] == 5 for s in ("new", "grounded", "mesh"))


def test_grounded_drops_a_planted_test_abstract_and_reports_it(tmp_path, prepared_dir, strategy_server):
    corpus = write_corpus(tmp_path / "corpus")
    test = read_records(prepared_dir / "test.jsonl")
    (corpus / "leak.jsonl").write_text(json.dumps({"id": "leak", "text": test[0].context}) + "\n")
    p = params(strategies=["grounded"], per_strategy=0, grounded={"corpus": "corpus", "chunk_tokens": 200,
                                                                  "overlap_tokens": 4})
    m, recs, rejects = generate(tmp_path, p)
    assert m["grounded_dropped_test_overlap"] >= 1
    assert not any(r.teacher["grounding"]["file"] == "leak.jsonl" for r in recs)
    assert json.loads((tmp_path / "metrics/generate.json").read_text())["grounded_dropped_test_overlap"] >= 1
