"""The progressive loader: local files in medaug's progressive schema, the bundled synthetic sample, and errors."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from medaug.data import mcq
from medaug.data.loaders import LOADERS
from medaug.data.mcq import from_progressive_rows
from medaug.data.schema import Record
from medaug.errors import MedaugError
from support.paths import SAMPLES
from support.rows import write

pytestmark = pytest.mark.usefixtures("hf_cache")

SAMPLE_DIR = SAMPLES / "progressive"


def load_splits(loader: str, *args):
    """mcq.load_splits with the loader named as a task file names it."""
    return mcq.load_splits(LOADERS[loader], *args)

OPTS = {"A": "droop-fever", "B": "spark-sneeze", "C": "glimmerpox", "D": "the lightness"}


def step(reveal: str = "A glorp sneezes sparks.", question: str = "Which ailment?", answer: str = "B",
         options: dict | None = None) -> dict:
    options = dict(OPTS) if options is None else options
    return {"reveal": reveal, "question": question, "options": options, "answer": answer}


def case(case_id: str = "c1", n: int = 3) -> dict:
    return {"case_id": case_id, "steps": [step(f"Reveal {j}.", f"Question {j}?", "ABCD"[j % 4]) for j in range(n)]}


# ---------------------------------------------------------------- rows -> records

def test_local_files_map_to_one_record_per_step(tmp_path):
    folder = tmp_path / "cases"
    write(folder / "train.jsonl", [case("c1", 3), case("c2", 1)])
    write(folder / "test.jsonl", [case("t1", 2)])
    got = load_splits("progressive", str(folder), tmp_path, ["train", "test"])
    mc = {"options": OPTS, "long_answer": "", "source": "original"}
    assert got["train"] == [
        Record(id="c1-1", question="Question 0?", contexts=["Reveal 0."], final_decision="A",
               chain={"id": "c1", "step": 1, "steps": 3}, history=[], **mc),
        Record(id="c1-2", question="Question 1?", contexts=["Reveal 0.", "Reveal 1."], final_decision="B",
               chain={"id": "c1", "step": 2, "steps": 3},
               history=[{"question": "Question 0?", "answer": "droop-fever"}], **mc),
        Record(id="c1-3", question="Question 2?", contexts=["Reveal 0.", "Reveal 1.", "Reveal 2."],
               final_decision="C", chain={"id": "c1", "step": 3, "steps": 3},
               history=[{"question": "Question 0?", "answer": "droop-fever"},
                        {"question": "Question 1?", "answer": "spark-sneeze"}], **mc),
        Record(id="c2-1", question="Question 0?", contexts=["Reveal 0."], final_decision="A",
               chain={"id": "c2", "step": 1, "steps": 1}, history=[], **mc)]
    assert [(r.id, r.unit, r.chain["steps"], len(r.history)) for r in got["test"]] == [
        ("t1-1", "t1", 2, 0), ("t1-2", "t1", 2, 1)]
    assert all("history" in r.to_dict() for rs in got.values() for r in rs)


def test_options_arrow_filled_with_none_are_dropped():
    # a file whose steps have different letters: arrow gives each step the union, the missing ones as None
    row = {"case_id": "c", "steps": [step(options={"A": "x", "B": "y", "C": None}, answer="A")]}
    (record,) = from_progressive_rows([row], "t.jsonl", "train")
    assert record.options == {"A": "x", "B": "y"}


# ---------------------------------------------------------------- errors name the file, row and step

@pytest.mark.parametrize("bad, expected", [
    ({"case_id": None}, r"row 1: missing field 'case_id'"),
    ({"case_id": "c1"}, r"row 1: duplicate case_id 'c1'"),
    ({"case_id": " "}, r"row 1: field 'case_id' is empty"),
    ({"steps": []}, r"row 1: field 'steps' must be a non-empty list of steps .*\(got 0 steps\)"),
    ({"steps": [step(), {**step(), "reveal": None}]}, r"row 1: step 2: missing field 'reveal'"),
    ({"steps": [{**step(), "question": None}]}, r"row 1: step 1: missing field 'question'"),
    ({"steps": [step(), step(), {**step(), "options": None}]}, r"row 1: step 3: missing field 'options'"),
    ({"steps": [{**step(), "answer": None}]}, r"row 1: step 1: missing field 'answer'"),
    ({"steps": [step(), step(answer="E")]},
     r"row 1: step 2: field 'answer' must be the letter of one of its options, A, B, C, D \(got 'E'\)"),
    ({"steps": [step(options={**OPTS, "D": " Glimmerpox"})]}, r"row 1: step 1: field 'options' has two identical"),
])
def test_bad_rows_name_file_row_and_step(tmp_path, bad, expected):
    path = write(tmp_path / "cases" / "train.jsonl", [case("c1"), {**case("c2"), **bad}])
    with pytest.raises(MedaugError, match="^" + re.escape(str(path)) + ": " + expected) as e:
        load_splits("progressive", "cases", tmp_path, ["train"])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("row, expected", [
    ({"case_id": 7, "steps": [step()]}, r"row 0: field 'case_id' must be str, got int \(a row is \{case_id, steps"),
    ({"case_id": "c", "steps": step()}, r"row 0: field 'steps' must be a non-empty list of steps .*\(got dict\)"),
    ({"case_id": "c"}, r"row 0: field 'steps' must be a non-empty list .*\(got NoneType\)"),
    ({"case_id": "c", "steps": [step(options=["x", "y"])]}, r"row 0: step 1: field 'options' must be dict, got list"),
    ({"case_id": "c", "steps": [step(options={"A": "x", "B": 2}, answer="A")]},
     r"row 0: step 1: option 'B' must be str"),
    ({"case_id": "c", "steps": [step(reveal="  ")]}, r"row 0: step 1: field 'reveal' is empty"),
    ("not a row", r"row 0: missing field 'case_id'"),
])
def test_ill_typed_rows_name_the_field(row, expected):
    with pytest.raises(MedaugError, match="^t.jsonl: " + expected):
        from_progressive_rows([row], "t.jsonl", "train")



# ---------------------------------------------------------------- the bundled sample

def build_module():
    path = SAMPLE_DIR.parent / "build_progressive_sample.py"
    spec = importlib.util.spec_from_file_location("build_progressive_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_sample_loads_balanced():
    got = load_splits("progressive", str(SAMPLE_DIR), Path("/nonexistent"), ["train", "test"])
    for split, cases in (("train", 40), ("test", 12)):
        records = got[split]
        assert len(records) == 3 * cases and len({r.id for r in records}) == len(records)
        chains = Counter(r.unit for r in records)
        assert len(chains) == cases and set(chains.values()) == {3}
        assert sorted(chains) == [f"prog-{split}-{i:03d}" for i in range(1, cases + 1)]
        for k in (1, 2, 3):
            at_k = [r for r in records if r.chain["step"] == k]
            assert Counter(r.final_decision for r in at_k) == {x: cases // 4 for x in "ABCD"}
        assert all(list(r.options) == list("ABCD") and len(set(r.options.values())) == 4 for r in records)
        by_chain: dict[str, list[Record]] = {}
        for r in records:
            by_chain.setdefault(r.unit, []).append(r)
        for steps in by_chain.values():
            assert [r.chain["step"] for r in steps] == [1, 2, 3]
            assert len({r.question for r in steps}) == 3
            assert [len(r.contexts) for r in steps] == [1, 2, 3]
            assert steps[2].history == [{"question": r.question, "answer": r.options[r.final_decision]}
                                        for r in steps[:2]]
    first = {split: {r.contexts[0] for r in got[split]} for split in got}
    assert not first["train"] & first["test"]


def test_bundled_sample_is_what_the_builder_writes():
    files = build_module().build()
    assert sorted(p.relative_to(SAMPLE_DIR).as_posix() for p in files) == ["test.jsonl", "train.jsonl"]
    for path, rows in files.items():
        assert [json.loads(line) for line in path.read_text().splitlines()] == rows
        assert path.stat().st_size < 60_000


def test_bundled_sample_answers_follow_the_rules():
    m = build_module()
    records = load_splits("progressive", str(SAMPLE_DIR), Path("."), ["train", "test"])
    for r in records["train"] + records["test"]:
        answer = r.options[r.final_decision]
        if r.chain["step"] == 1:
            sign = r.contexts[0].rsplit(": ", 1)[1].rstrip(".")
            assert answer == m.SIGNS[sign]
        elif r.chain["step"] == 2:
            ailment = r.history[0]["answer"]
            colour = re.search(r"the water turns (\w+)", r.contexts[1])[1]
            assert answer == m.REMEDIES[ailment][m.TESTS[colour]]
            assert set(r.options.values()) >= set(m.REMEDIES[ailment])  # needs the ailment and the colour
        else:
            ailment, remedy = (h["answer"] for h in r.history)
            if "the signs have cleared" in r.contexts[2]:
                assert answer == m.HOME
            elif remedy == m.REMEDIES[ailment][0]:
                assert answer == m.give(m.REMEDIES[ailment][1])
            else:
                assert answer == m.refer(ailment)
