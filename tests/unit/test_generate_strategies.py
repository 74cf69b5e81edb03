"""Generation strategies beyond rewrite/new, in process: their params, quotas and label targets
(`generate.label_mix`), a user corpus cut into passages (`grounded`), MeSH-balanced parents (`mesh`), and their
prompt files. Generation against the real HTTP test teacher: tests/integration/test_generate_strategies.py."""

import json
import random
import re
from collections import Counter

import pytest
from ruamel.yaml import YAML

from medaug.augment import grounded, mesh
from medaug.data import mesh as data_mesh
from medaug.augment.generate import plan
from medaug.augment.strategies.base import build_prompt, load_prompt, pick, quotas, targets
from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.llm.structured import validate as validate_reply
from medaug.params import load_params, parse_params
from support.paths import ROOT
from support.strategies import LABELS, check, make_train, params, responder, schema, words_, write_corpus


# --- params -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate,message", [
    ({"label_mix": {"yes": 1, "unsure": 1}}, "label_mix has unknown label 'unsure'"),
    ({"label_mix": {"yes": -1}}, r"label_mix.yes must be >= 0"),
    ({"label_mix": {"yes": 0, "no": 0}}, "label_mix needs a weight > 0"),
    ({"label_mix": {"yes": True}}, r"generate.label_mix.yes = True must be float"),
    ({"strategies": ["grounded"], "grounded": {"corpus": ""}}, "generate.grounded.corpus is empty"),
    ({"strategies": ["new", "mesh", "new"]}, "lists a strategy twice"),
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


def test_without_label_mix_nothing_changes(tmp_path):
    """Empty label_mix asks exactly what it asked before (new.txt, random parents, sample 0): caches stay valid."""
    train = make_train("ynm" * 5)
    jobs = plan(params(per_strategy=6), train)
    assert [j.prompt() for j in jobs if j.strategy == "new"] == [
        build_prompt(load_prompt("new")[0], r) for r in pick(train, 6, 0, "new")]
    assert [j.item.id for j in jobs if j.strategy == "rewrite"] == [r.id for r in pick(train, 6, 0, "rewrite")]
    assert {(j.sample, j.target) for j in jobs} == {(0, "")}


# --- grounded: chunking -------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("strategy", ["new_target", "grounded", "mesh"])
def test_new_prompt_files_ask_for_the_new_schema_and_the_responder_answers_validly(strategy):
    text, _ = load_prompt(strategy)
    item = make_train("m")[0]
    prompt = build_prompt(text, item, target="maybe", heading="Drug0")
    assert prompt.endswith("\nReply:") and not re.search(r"\{(context|question|answer|target|heading)\}", prompt)
    example = json.loads(prompt.split("Reply: ", 1)[1].split("\n", 1)[0])
    assert set(example) == set(schema("new")["properties"])
    assert item.context in prompt and item.question not in prompt
    fields = validate_reply(responder(prompt), schema("new"), lambda f: f)
    assert isinstance(check("new", fields, item, text, "maybe" if strategy == "new_target" else ""), dict)


def test_placeholders_in_an_items_text_are_left_alone():
    item = Record(id="x", question="q?", contexts=["A set {target} in LaTeX and {heading} text."],
                  final_decision="yes")
    prompt = build_prompt(load_prompt("mesh")[0], item, heading="Sets")
    assert "A set {target} in LaTeX and {heading} text." in prompt and "MeSH topic: Sets" in prompt
