"""MedQA / MedMCQA loaders: local files in the hub schemas, the bundled synthetic sample, and their errors."""

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from medaug.data import loaders, mcq
from medaug.data.loaders import LOADERS
from medaug.data.mcq import from_medmcqa_rows, from_medqa_rows
from medaug.params import TaskParams
from medaug.data.schema import Record
from medaug.errors import MedaugError
from support.paths import SAMPLES
from support.rows import write

pytestmark = pytest.mark.usefixtures("hf_cache")

SAMPLE_DIR = SAMPLES


def load_splits(loader: str, *args):
    """mcq.load_splits with the loader named as a task file names it."""
    return mcq.load_splits(LOADERS[loader], *args)

OPTS = {"A": "ice caverns", "B": "lava fields", "C": "floating marshes", "D": "crystal forests"}


def medqa_row(question="A blue glorp. Where?", idx="C", **kw) -> dict:
    row = {"question": question, "answer": OPTS[idx] if idx in OPTS else "x", "options": dict(OPTS),
           "meta_info": "step1", "answer_idx": idx, "metamap_phrases": ["blue glorp"]}
    return {**row, **kw}


def medmcqa_row(rid="id-1", cop=1, exp="Blue fur means ice.", **kw) -> dict:
    row = {"id": rid, "question": f"Question {rid}?", "opa": "one", "opb": "two", "opc": "three", "opd": "four",
           "cop": cop, "choice_type": "single", "exp": exp, "subject_name": "Zoology", "topic_name": None}
    return {**row, **kw}


# ---------------------------------------------------------------- rows -> records

def test_medqa_files_map_to_records(tmp_path):
    write(tmp_path / "exam" / "train.jsonl", [medqa_row(), medqa_row("A red vexil. Where?", "A")])
    write(tmp_path / "exam" / "test.parquet", [medqa_row("A silver quorl. Where?", "D", answer=None)])
    got = load_splits("medqa", "exam", tmp_path, ["train", "test"])
    mc = {"contexts": [], "options": OPTS, "long_answer": "", "source": "original"}
    assert got == {"train": [Record(id="medqa-train-0", question="A blue glorp. Where?", final_decision="C", **mc),
                             Record(id="medqa-train-1", question="A red vexil. Where?", final_decision="A", **mc)],
                   "test": [Record(id="medqa-test-0", question="A silver quorl. Where?", final_decision="D", **mc)]}


def test_medmcqa_files_map_to_records(tmp_path):
    # an absolute folder is used as is, whatever the root
    folder = tmp_path / "mmc"
    write(folder / "train.parquet", [medmcqa_row("a1", 0), medmcqa_row("a2", 3, exp=None)])
    write(folder / "validation.jsonl", [medmcqa_row("v1", 2)])
    got = load_splits("medmcqa", str(folder), Path("/nonexistent"), ["train", "validation"])
    opts = {"A": "one", "B": "two", "C": "three", "D": "four"}
    assert [(r.id, r.question, r.final_decision, r.long_answer) for r in got["train"]] == [
        ("a1", "Question a1?", "A", "Blue fur means ice."), ("a2", "Question a2?", "D", "")]
    assert [(r.id, r.final_decision) for r in got["validation"]] == [("v1", "C")]
    assert all(r.options == opts and r.contexts == [] and r.source == "original" for rs in got.values() for r in rs)


# ---------------------------------------------------------------- the bundled sample

def build_module():
    path = SAMPLE_DIR / "build_mcq_sample.py"
    spec = importlib.util.spec_from_file_location("build_mcq_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("loader, counts", [("medqa", {"train": 120, "test": 40}),
                                            ("medmcqa", {"train": 120, "validation": 40})])
def test_bundled_sample_loads_balanced(loader, counts):
    got = load_splits(loader, str(SAMPLES / loader), Path("/nonexistent"), list(counts))
    assert {s: len(rs) for s, rs in got.items()} == counts
    for records in got.values():
        n = len(records)
        assert Counter(r.final_decision for r in records) == {x: n // 4 for x in "ABCD"}
        assert all(list(r.options) == list("ABCD") and len(set(r.options.values())) == 4 for r in records)
        assert len({r.id for r in records}) == n
        if loader == "medmcqa":
            assert all(r.long_answer for r in records)
    train, test = (got[s] for s in counts)
    assert not {r.question for r in train} & {r.question for r in test}


def test_bundled_sample_is_what_the_builder_writes():
    files = build_module().build()
    assert sorted(p.relative_to(SAMPLE_DIR).as_posix() for p in files) == [
        "medmcqa/train.jsonl", "medmcqa/validation.jsonl", "medqa/test.jsonl", "medqa/train.jsonl"]
    for path, rows in files.items():
        assert [json.loads(line) for line in path.read_text().splitlines()] == rows
        assert path.stat().st_size < 60_000


def test_bundled_sample_answers_follow_the_rules():
    module = build_module()
    for r in load_splits("medmcqa", str(SAMPLES / "medmcqa"), Path("."), ["train"])["train"]:
        answer = r.options[r.final_decision]
        if m := re.search(r"with (\w+) fur", r.question):
            assert answer == module.HABITATS[m[1]]
        elif m := re.search(r"1 flim is worth (\d+) zabs\. \w+ pays (\d+) flims and (\d+) zabs", r.question):
            assert answer == f"{int(m[1]) * int(m[2]) + int(m[3])} zabs"
        elif m := re.search(r"on day (\d+) .* takes (\d+) days", r.question):
            assert answer == f"Day {int(m[1]) + int(m[2])}"
        else:
            call = re.search(r"(\w+) when approached", r.question)[1]
            assert answer == f"It feeds {module.CALLS[call]}"


# ---------------------------------------------------------------- errors name the file and row

@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
@pytest.mark.parametrize("bad, expected", [
    ({"question": None}, r"row 1: missing field 'question'"),
    ({"answer_idx": "E"}, r"row 1: field 'answer_idx' must be one of A, B, C, D \(got 'E'\)"),
    ({"answer": "lava fields"}, r"row 1: field 'answer' \('lava fields'\) is not option C"),
    ({"options": {**OPTS, "B": " Ice  Caverns"}}, r"row 1: field 'options' has two identical options"),
    ({"question": " "}, r"row 1: field 'question' is empty"),
])
def test_bad_medqa_rows_name_file_and_row(tmp_path, ext, bad, expected):
    path = write(tmp_path / "exam" / f"train{ext}", [medqa_row(), {**medqa_row(), **bad}])
    with pytest.raises(MedaugError, match=re.escape(str(path)) + ": " + expected) as e:
        load_splits("medqa", "exam", tmp_path, ["train"])
    assert "\n" not in str(e.value)


def test_medqa_wrong_types_name_the_field():
    with pytest.raises(MedaugError, match=r"^t\.jsonl: row 0: field 'question' must be str, got int$"):
        from_medqa_rows([medqa_row(question=7)], "t.jsonl", "train")
    with pytest.raises(MedaugError, match=r"^t\.jsonl: row 0: field 'options' must be dict, got list$"):
        from_medqa_rows([medqa_row(options=list(OPTS.values()))], "t.jsonl", "train")
    with pytest.raises(MedaugError, match=r"^t\.jsonl: row 1: option 'B' must be str, got int$"):
        from_medqa_rows([medqa_row(), medqa_row(options={**OPTS, "B": 2})], "t.jsonl", "train")
    with pytest.raises(MedaugError, match=r"^t\.jsonl: row 0: missing field 'answer_idx'$"):
        from_medqa_rows([{k: v for k, v in medqa_row().items() if k != "answer_idx"}], "t.jsonl", "train")


@pytest.mark.parametrize("rows, expected", [
    ([medmcqa_row("a"), medmcqa_row("b", -1)],
     r"row 1: the answer is hidden \(cop = -1\).*use the validation split as test$"),
    ([medmcqa_row("a"), medmcqa_row("b"), medmcqa_row("a")], r"row 2: duplicate id 'a'$"),
    ([medmcqa_row("a", 4)], r"row 0: field 'cop' must be 0, 1, 2 or 3 \(got 4\)$"),
    ([medmcqa_row("a", "1")], r"row 0: field 'cop' must be int, got str$"),
    ([medmcqa_row("a", True)], r"row 0: field 'cop' must be int, got bool$"),
    ([medmcqa_row("a", opc=None)], r"row 0: missing field 'opc'$"),
    ([medmcqa_row("a", exp=3)], r"row 0: field 'exp' must be str, got int$"),
    ([medmcqa_row("a", opd="ONE ")], r"row 0: field 'options' has two identical options$"),
])
def test_bad_medmcqa_rows_name_file_and_row(rows, expected):
    with pytest.raises(MedaugError, match="^dev.parquet: " + expected):
        from_medmcqa_rows(rows, "dev.parquet", "train")


def test_medmcqa_hidden_test_labels_from_a_file(tmp_path):
    path = write(tmp_path / "mmc" / "test.parquet", [medmcqa_row("a", -1)])
    with pytest.raises(MedaugError, match=re.escape(f"{path}: row 0: the answer is hidden")):
        load_splits("medmcqa", "mmc", tmp_path, ["test"])


def test_missing_split_file_names_file_and_folder(tmp_path):
    write(tmp_path / "exam" / "train.jsonl", [medqa_row()])
    folder = tmp_path / "exam"
    with pytest.raises(MedaugError, match=re.escape(f"{folder / 'test.jsonl'}: file not found (the data.source "
                                                    f"folder {folder} needs test.jsonl or test.parquet")):
        load_splits("medqa", "exam", tmp_path, ["train", "test"])


def test_source_must_be_one_folder_per_split_and_loader_known(tmp_path):
    write(tmp_path / "train.jsonl", [medqa_row()])
    with pytest.raises(MedaugError, match="data.source = 'train.jsonl' is not a folder"):
        load_splits("medqa", "train.jsonl", tmp_path, ["train"])
    write(tmp_path / "exam" / "train.jsonl", [medqa_row()])
    write(tmp_path / "exam" / "train.parquet", [medqa_row()])
    with pytest.raises(MedaugError, match="exam: both train.jsonl and train.parquet exist; keep one"):
        load_splits("medqa", "exam", tmp_path, ["train"])
    with pytest.raises(MedaugError, match=r"loader 'nope' is no loader \(known: medmcqa, medqa, progressive, "
                                          r"pubmedqa\); a new source schema is a module in src/medaug/data/loaders/"):
        loaders.get(TaskParams(loader="nope"))


def test_unreadable_file_is_one_line_error(tmp_path):
    (tmp_path / "exam").mkdir()
    (tmp_path / "exam" / "train.parquet").write_text("not parquet")
    with pytest.raises(MedaugError, match=r"train\.parquet: cannot read as parquet in the hub schema") as e:
        load_splits("medqa", "exam", tmp_path, ["train"])
    assert "\n" not in str(e.value)
