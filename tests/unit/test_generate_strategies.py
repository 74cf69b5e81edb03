"""Generation strategies beyond rewrite/new: label targets (`generate.label_mix`), passages of a user corpus
(`grounded`), MeSH-balanced parents (`mesh`), and all of them mixed in one run, against a real OpenAI-compatible
server on 127.0.0.1 whose responder follows each prompt (and misbehaves where a test says so)."""

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import ROOT
from medaug import filtering
from medaug.augment import grounded, mesh
from medaug.data import mesh as data_mesh
from medaug.augment.generate import (SCHEMAS, build_prompt, check, dry_run, load_prompt, pick, plan, quotas, run,
                                     targets)
from medaug.data import prepare
from medaug.data.schema import Record, read_records, write_records
from medaug.errors import MedaugError
from medaug.llm.structured import validate as validate_reply
from medaug.params import Params, load_params, parse_params
from openai_server import OpenAIServer, pubmedqa_responder

LABELS = ("yes", "no", "maybe")


def task_field(prompt: str, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(.*)$", prompt.rsplit("### Task", 1)[-1], re.MULTILINE)
    return m.group(1).strip() if m else ""


def topic(text: str) -> str:
    return " ".join(re.findall(r"[A-Za-z0-9-]+", text)[:8]).lower()


def responder(prompt: str) -> str:
    """A deterministic teacher for every prompt: new_target answers with the label asked for, grounded asks about
    the passage's first words, mesh about its topic; rewrite and new as tests/openai_server.py."""
    explanation = lambda text: re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0]  # noqa: E731
    if "one whose answer is the answer given" in prompt:
        abstract = task_field(prompt, "Abstract")
        return json.dumps({"question": f"Does the study of {topic(abstract)} show the reported effect?",
                           "answer": task_field(prompt, "Answer"), "explanation": explanation(abstract)})
    if "MeSH topic:" in prompt:
        abstract, heading = task_field(prompt, "Abstract"), task_field(prompt, "MeSH topic")
        return json.dumps({"question": f"Regarding {heading}, did the study of {topic(abstract)} find an effect?",
                           "answer": LABELS[len(abstract) % 3], "explanation": explanation(abstract)})
    if "Passage:" in prompt:
        passage = task_field(prompt, "Passage")
        return json.dumps({"question": f"Does the passage on {topic(passage)} support its main claim?",
                           "answer": LABELS[len(passage) % 3], "explanation": explanation(passage)})
    return pubmedqa_responder(prompt)


def make_train(labels: str, meshes=None) -> list[Record]:
    """One record per letter of `labels` (y/n/m)."""
    full = {"y": "yes", "n": "no", "m": "maybe"}
    return [Record(id=str(2000 + i), question=f"Does treatment {i} improve outcome {i % 4}?",
                   contexts=[f"We enrolled {30 + i} patients in trial {i}.", f"Outcome {i % 4} changed by {i}%."],
                   final_decision=full[c], long_answer=f"Treatment {i} had an effect.",
                   meshes=meshes[i] if meshes else ["Humans", f"Drug{i}"]) for i, c in enumerate(labels)]


def params(teacher=None, **generate) -> Params:
    return parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 2,
                                     "backoff_s": 0.01, "max_concurrency": 4, **(teacher or {})},
                         "generate": {"per_strategy": 4, "seed": 0, **generate}})


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def generate(root: Path, p: Params, prepared: Path | None = None) -> tuple[dict, list[Record], list[dict]]:
    out = root / "data/generated"
    m = run(p, root, prepared or root / "data/prepared", out / "generated.jsonl", out / "rejects.jsonl",
            root / "metrics/generate.json")
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    return m, read_records(out / "generated.jsonl"), rejects


# --- params -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate,message", [
    ({"label_mix": {"yes": 1, "unsure": 1}}, "label_mix has unknown label 'unsure'"),
    ({"label_mix": {"yes": -1}}, r"label_mix.yes must be >= 0"),
    ({"label_mix": {"yes": 0, "no": 0}}, "label_mix needs a weight > 0"),
    ({"label_mix": {"yes": True}}, r"generate.label_mix.yes = True must be float"),
    ({"strategies": ["grounded"], "grounded": {"corpus": ""}}, "generate.grounded.corpus is empty"),
    ({"strategies": ["new", "mesh", "new"]}, "lists a strategy twice"),
    ({"strategies": ["textbook"]}, "allowed: rewrite, new, grounded, mesh"),
    ({"grounded": {"chunk_tokens": 32, "overlap_tokens": 32}}, r"overlap_tokens in \[0, chunk_tokens\)"),
    ({"mesh": {"tree": "x"}}, "unknown key 'generate.mesh.tree'"),
])
def test_bad_generate_params_fail_with_the_key(generate, message):
    with pytest.raises(MedaugError, match=message):
        parse_params({"generate": generate})


def test_shipped_params_keep_todays_strategies_and_point_dvc_deps_at_files_that_exist():
    """dvc.yaml's generate stage depends on ${generate.grounded.corpus} and ${generate.mesh.descriptors}, so
    both must exist even when their strategy is not used; the shipped descriptors file maps nothing."""
    g = load_params(ROOT / "params.yaml").generate
    assert g.strategies == ["rewrite", "new"] and g.label_mix == {}
    assert (ROOT / g.grounded.corpus).is_dir() and grounded.read_corpus(ROOT / g.grounded.corpus, 256, 32)
    assert data_mesh.load_descriptors(ROOT / g.mesh.descriptors) == {}
    deps = YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text())["stages"]["generate"]["deps"]
    assert {"${generate.grounded.corpus}", "${generate.mesh.descriptors}"} <= set(deps)


# --- label_mix ----------------------------------------------------------------------------------------------------


def test_quotas_are_exact_and_within_one_of_each_share():
    assert quotas(10, {"yes": 1, "no": 1, "maybe": 1}) == {"yes": 4, "no": 3, "maybe": 3}
    assert quotas(7, {"maybe": 1}) == {"yes": 0, "no": 0, "maybe": 7}
    rng = random.Random(0)
    for _ in range(200):
        mix = {k: rng.choice([0, 0.5, 1, 2, 3.3]) for k in LABELS} | {"yes": rng.uniform(0.1, 5)}
        n = rng.randrange(0, 60)
        q = quotas(n, mix)
        assert sum(q.values()) == n
        assert all(abs(q[k] - n * mix[k] / sum(mix.values())) < 1 for k in LABELS)
    t = targets(12, {"yes": 1, "no": 1, "maybe": 2}, seed=0)
    assert Counter(t) == {"yes": 3, "no": 3, "maybe": 6} and t == targets(12, {"yes": 1, "no": 1, "maybe": 2}, 0)
    assert t[:6] != ["yes"] * 3 + ["no"] * 3  # shuffled, not in blocks


def test_label_mix_sets_the_labels_of_rewrites_and_new_questions(tmp_path, server):
    # 14 yes, 8 no, 2 maybe: a skewed train split, as PubMedQA's (552 / 338 / 110)
    write_records(tmp_path / "data/prepared/train.jsonl", make_train("yn" * 8 + "y" * 6 + "mm"))
    mix = {"yes": 1, "no": 1, "maybe": 2}
    m, recs, rejects = generate(tmp_path, params(per_strategy=12, label_mix=mix))
    assert m["labels"] == {"rewrite": {"yes": 3, "no": 3, "maybe": 6}, "new": {"yes": 3, "no": 3, "maybe": 6}}
    assert rejects == [] and m["generated"] == 24
    # rewrite: the 2 maybe parents are asked 3 times each, as samples 0, 1, 2 (another seed, another cache entry)
    maybe = sorted(r.id for r in recs if r.source == "rewrite" and r.final_decision == "maybe")
    assert maybe == sorted(f"{pid}-rewrite-{s}" for pid in ("2022", "2023") for s in range(3))
    rewrite_seeds = Counter(b["seed"] for b in server.requests if "Rewrite the research" in b["messages"][0]["content"])
    assert rewrite_seeds == {0: 8, 1: 2, 2: 2}
    # new: each prompt names its target, asked with new_target.txt, and the record carries that label
    targets_asked = Counter(task_field(b["messages"][0]["content"], "Answer") for b in server.requests
                            if "whose answer is the answer given" in b["messages"][0]["content"])
    assert targets_asked == {"yes": 3, "no": 3, "maybe": 6}
    assert {r.teacher["prompt_sha"] for r in recs if r.source == "new"} == {load_prompt("new_target")[1]}
    # deterministic: the same seed asks for the same items again (all cached), another seed for others
    sent = len(server.requests)
    m2, recs2, _ = generate(tmp_path, params(per_strategy=12, label_mix=mix))
    assert [r.id for r in recs2] == [r.id for r in recs] and len(server.requests) == sent
    est = dry_run(params(per_strategy=12, label_mix=mix), tmp_path, tmp_path / "data/prepared")
    assert (est["requests"], est["to_send"]) == (24, 0)  # the dry run asks for the same samples
    _, recs3, _ = generate(tmp_path, params(per_strategy=12, label_mix=mix, seed=1))
    assert {r.id for r in recs3 if r.source == "new"} != {r.id for r in recs if r.source == "new"}


def test_without_label_mix_nothing_changes(tmp_path):
    """Empty label_mix asks exactly what it asked before (new.txt, random parents, sample 0): caches stay valid."""
    train = make_train("ynm" * 5)
    jobs = plan(params(per_strategy=6), train)
    assert [j.prompt() for j in jobs if j.strategy == "new"] == [
        build_prompt(load_prompt("new")[0], r) for r in pick(train, 6, 0, "new")]
    assert [j.item.id for j in jobs if j.strategy == "rewrite"] == [r.id for r in pick(train, 6, 0, "rewrite")]
    assert {(j.sample, j.target) for j in jobs} == {(0, "")}


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


# --- grounded: chunking -------------------------------------------------------------------------------------------


def words_(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_chunks_pack_whole_paragraphs_within_the_budget_with_the_overlap_carried():
    a, b, c = words_("a", 5), words_("b", 5), words_("c", 5)
    assert grounded.chunk_words([a, b, c], 12, 2) == [a + b, ["b3", "b4"] + c]
    long = words_("w", 30)  # longer than the budget: cut at the budget
    assert grounded.chunk_words([long], 12, 2) == [long[0:12], long[10:22], long[20:30]]
    assert grounded.chunk_words([a, b, c], 10, 0) == [a + b, c]
    assert grounded.chunk_words([], 10, 2) == []


def test_chunking_invariants_on_random_documents():
    rng = random.Random(1)
    for trial in range(300):
        size = rng.randrange(2, 40)
        overlap = rng.randrange(0, size)
        paras = [words_(f"p{trial}.{i}.", rng.randrange(1, 60)) for i in range(rng.randrange(1, 8))]
        chunks = grounded.chunk_words(paras, size, overlap)
        assert all(0 < len(ch) <= size for ch in chunks)
        rebuilt = list(chunks[0])
        for prev, ch in zip(chunks, chunks[1:]):
            assert ch[:overlap] == prev[len(prev) - overlap:]  # exactly the overlap is repeated
            rebuilt += ch[overlap:]
        assert rebuilt == [w for p in paras for w in p]  # nothing lost, nothing else repeated
        # every chunk but the last has words of its own, and ends at a paragraph's end unless that paragraph
        # is too long for any chunk
        assert all(len(ch) > overlap for ch in chunks[:-1])
        para_of = {w: p for p in paras for w in p}
        assert all(ch[-1] == para_of[ch[-1]][-1] or len(para_of[ch[-1]]) > size - overlap for ch in chunks)


def write_corpus(folder: Path) -> Path:
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters/02-kidney.md").write_text(
        "# Kidney\n\n## Acute kidney injury\n\n" + " ".join(words_("k", 30)) + "\n\n" + " ".join(words_("r", 10)))
    (folder / "01-notes.txt").write_text(" ".join(words_("t", 8)) + "\n   \n" + "second paragraph here.\n")
    (folder / "abstracts.jsonl").write_text(
        json.dumps({"id": "A7", "title": "Statins", "text": " ".join(words_("s", 25))}) + "\n\n" +
        json.dumps({"text": "Untitled abstract text."}) + "\n")
    (folder / ".hidden").mkdir()
    (folder / ".hidden/skip.txt").write_text("never read")
    (folder / "figure.pdf").write_bytes(b"%PDF")
    return folder


def test_read_corpus_reads_txt_md_jsonl_in_sorted_order_with_pointers(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    passages = grounded.read_corpus(corpus, 20, 4)
    assert [(s.file, s.chunk) for s in passages] == [
        ("01-notes.txt", 0), ("abstracts.jsonl", 0), ("abstracts.jsonl", 1), ("abstracts.jsonl", 2),
        ("chapters/02-kidney.md", 0), ("chapters/02-kidney.md", 1), ("chapters/02-kidney.md", 2)]
    assert passages[0].text == " ".join(words_("t", 8)) + " second paragraph here."
    assert passages[1].pointer == {"file": "abstracts.jsonl", "chunk": 0, "doc": "A7", "title": "Statins"}
    assert passages[2].text.split()[:4] == words_("s", 25)[16:20]  # the overlap
    assert passages[3].pointer == {"file": "abstracts.jsonl", "chunk": 2, "doc": "3"}  # no id: its line number
    # Markdown heading marks are dropped, their words kept
    assert passages[4].text.split()[:3] == ["Kidney", "Acute", "kidney"]
    assert all(len(s.text.split()) <= 20 for s in passages)
    item = passages[4].as_item()
    assert item.id == "chapters/02-kidney.md#0" and item.contexts == [passages[4].text]
    assert grounded.read_corpus(corpus, 20, 4) == passages


def test_corpus_errors_name_the_key_or_the_line(tmp_path):
    with pytest.raises(MedaugError, match="generate.grounded.corpus: .* is not a folder"):
        grounded.read_corpus(tmp_path / "missing", 10, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedaugError, match=r"has no \.txt, \.md, \.jsonl files"):
        grounded.read_corpus(tmp_path / "empty", 10, 0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/docs.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(MedaugError, match=r"docs.jsonl:2: a corpus .jsonl line needs a string 'text' field"):
        grounded.read_corpus(tmp_path / "bad", 10, 0)


# --- grounded: generation and filtering ---------------------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path):
    """The bundled synthetic sample, prepared (train/dev/test) in tmp_path/data/prepared."""
    out = tmp_path / "data/prepared"
    prepare.run(Params(), tmp_path, out, tmp_path / "metrics/prepare.json")
    return out


def filter_generated(root: Path, prepared: Path) -> dict:
    p = Params()
    p.filter.steps = ["validate", "dedup", "decontaminate"]
    out = root / "data/filtered"
    return filtering.run(p, prepared, root / "data/generated/generated.jsonl", out / "kept.jsonl",
                         out / "rejects.jsonl", root / "metrics/funnel.json", root=root)


def test_grounded_records_keep_their_passage_and_pointer_and_pass_filtering(tmp_path, prepared, server):
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
    prompts = [b["messages"][0]["content"] for b in server.requests]
    assert all(task_field(q, "Passage") in {s.text for s in passages.values()} for q in prompts)
    # a record grounded in a corpus has no parent in the prepared data, and passes the rule-based filters
    funnel = filter_generated(tmp_path, prepared)
    assert funnel["kept"] == 7 and funnel["by_source"] == {"grounded": {"in": 7, "kept": 7, "dropped": {}}}
    # per_strategy picks passages at random, the same ones for the same seed
    p3 = params(strategies=["grounded"], per_strategy=3, grounded={"corpus": str(corpus), "chunk_tokens": 20,
                                                                   "overlap_tokens": 4})
    ids = [j.item.id for j in plan(p3, [])]
    assert len(ids) == 3 and ids == [j.item.id for j in plan(p3, [], Path("/elsewhere"))]  # absolute path
    assert set(ids) <= set(passages)


# --- mesh ---------------------------------------------------------------------------------------------------------


def skewed_meshes() -> list[Record]:
    """60 records, all Humans; 40 also A, 15 B, 5 C (A, B, C exclusive), shuffled."""
    tags = ["A"] * 40 + ["B"] * 15 + ["C"] * 5
    random.Random(3).shuffle(tags)
    return make_train("y" * 60, meshes=[["Humans", t] for t in tags])


def test_mesh_sampling_covers_headings_evenly_where_random_pick_does_not():
    records = skewed_meshes()
    picked = [r for r, _ in mesh.balanced_pick(records, 15, seed=0)]
    assert data_mesh.mesh_coverage(picked)["headings"] == {"Humans": 15, "A": 5, "B": 5, "C": 5}
    # over 20 seeds: balanced sampling gives A, B, C 5 records each every time (spread max - min: 0); a random
    # pick of 15 gives the rarest heading 21 records in all (of the 100 it has), and a mean spread of 8.75
    balanced = [data_mesh.mesh_coverage([r for r, _ in mesh.balanced_pick(records, 15, s)])["headings"] for s in range(20)]
    randoms = [data_mesh.mesh_coverage(pick(records, 15, s, "mesh"))["headings"] for s in range(20)]

    def spread(c):
        return max(c.get(k, 0) for k in "ABC") - min(c.get(k, 0) for k in "ABC")
    assert all(c == {"Humans": 15, "A": 5, "B": 5, "C": 5} for c in balanced)
    assert sum(c.get("C", 0) for c in randoms) == 21 and sum(map(spread, randoms)) / 20 == 8.75


def test_mesh_picks_are_deterministic_in_train_order_and_skip_records_without_headings():
    records = skewed_meshes() + [Record(id="2999", question="q?", contexts=["c"], final_decision="no")]
    a = mesh.balanced_pick(records, 9, seed=4)
    assert a == mesh.balanced_pick(records, 9, seed=4) and a != mesh.balanced_pick(records, 9, seed=5)
    assert [r.id for r, _ in a] == sorted(r.id for r, _ in a)
    assert all(h in r.meshes and h != "Humans" for r, h in a)  # the heading each was picked for
    assert len(mesh.balanced_pick(records, 0, seed=0)) == 60  # 0 = every record that has a heading


def test_descriptors_in_both_formats_and_balancing_per_branch(tmp_path):
    f = tmp_path / "trees"
    f.write_text("# comment\nA;C14.280\nA;C14.907.1\n\nB\tC14.907;C23.550\nC;D27.505.954\nHumans;B01.050\n")
    d = data_mesh.load_descriptors(f)
    assert d == {"A": ["C14.280", "C14.907.1"], "B": ["C14.907", "C23.550"], "C": ["D27.505.954"],
                 "Humans": ["B01.050"]}
    assert data_mesh.branches("A", d) == {"C14"} and data_mesh.branches("B", d) == {"C14", "C23"}
    records = skewed_meshes()
    picked = mesh.balanced_pick(records, 10, seed=0, descriptors=d)
    cov = data_mesh.mesh_coverage([r for r, _ in picked], d)
    # D27 (5 records) and C23 (15, all B) are the rarest branches: they take turns, and every B is also C14
    assert cov["branches"] == {"B01": 10, "C14": 5, "C23": 5, "D27": 5}
    assert all(h in r.meshes and h != "Humans" for r, h in picked)
    (tmp_path / "bad").write_text("Heart Failure C14.280.434\n")
    with pytest.raises(MedaugError, match=r"bad:1: expected `Heading;TreeNumber`"):
        data_mesh.load_descriptors(tmp_path / "bad")


def test_mesh_coverage_counts_records_per_heading_and_branch():
    recs = make_train("yyy", meshes=[["Humans", "A", "A"], ["Humans", "B"], ["Z"]])
    d = {"A": ["C14.280"], "B": ["C14.907", "C23.1"], "Humans": ["B01.050"]}
    assert data_mesh.mesh_coverage(recs) == {"records": 3, "headings": {"Humans": 2, "A": 1, "B": 1, "Z": 1},
                                        "branches": {}}
    assert data_mesh.mesh_coverage(recs, d)["branches"] == {"B01": 2, "C14": 2, "(unmapped)": 1, "C23": 1}


# --- mixing -------------------------------------------------------------------------------------------------------


def test_every_strategy_in_one_run_each_record_names_its_strategy_and_the_set_passes_filtering(
        tmp_path, prepared, server):
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
    train = {r.id: r for r in read_records(prepared / "train.jsonl")}
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
    funnel = filter_generated(tmp_path, prepared)
    assert set(funnel["by_source"]) == {"rewrite", "new", "grounded", "mesh"}
    assert all(funnel["by_source"][s]["kept"] == 5 for s in ("new", "grounded", "mesh"))


@pytest.mark.parametrize("strategy", ["new_target", "grounded", "mesh"])
def test_new_prompt_files_ask_for_the_new_schema_and_the_responder_answers_validly(strategy):
    text, _ = load_prompt(strategy)
    item = make_train("m")[0]
    prompt = build_prompt(text, item, target="maybe", heading="Drug0")
    assert prompt.endswith("\nReply:") and not re.search(r"\{(context|question|answer|target|heading)\}", prompt)
    example = json.loads(prompt.split("Reply: ", 1)[1].split("\n", 1)[0])
    assert set(example) == set(SCHEMAS["new"]["properties"])
    assert item.context in prompt and item.question not in prompt
    fields = validate_reply(responder(prompt), SCHEMAS["new"], lambda f: f)
    assert isinstance(check("new", fields, item, text, "maybe" if strategy == "new_target" else ""), dict)


def test_placeholders_in_an_items_text_are_left_alone():
    item = Record(id="x", question="q?", contexts=["A set {target} in LaTeX and {heading} text."],
                  final_decision="yes")
    prompt = build_prompt(load_prompt("mesh")[0], item, heading="Sets")
    assert "A set {target} in LaTeX and {heading} text." in prompt and "MeSH topic: Sets" in prompt


def test_grounded_drops_a_planted_test_abstract_and_reports_it(tmp_path, prepared, server):
    corpus = write_corpus(tmp_path / "corpus")
    test = read_records(prepared / "test.jsonl")
    (corpus / "leak.jsonl").write_text(json.dumps({"id": "leak", "text": test[0].context}) + "\n")
    p = params(strategies=["grounded"], per_strategy=0, grounded={"corpus": "corpus", "chunk_tokens": 200,
                                                                  "overlap_tokens": 4})
    m, recs, rejects = generate(tmp_path, p)
    assert m["grounded_dropped_test_overlap"] >= 1
    assert not any(r.teacher["grounding"]["file"] == "leak.jsonl" for r in recs)
    assert json.loads((tmp_path / "metrics/generate.json").read_text())["grounded_dropped_test_overlap"] >= 1
