"""Sources -> Records, the official PubMedQA split, the bundled sample, and the prepare stage."""

import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from medaug.data import prepare
from medaug.data.jsonl import read_json
from medaug.data.pubmedqa import from_hub_rows, load_source
from medaug.data.schema import LABELS, Record, read_records
from medaug.data.split import official_split
from medaug.errors import MedaugError
from medaug.params import DataParams, Params, parse_params
from support.paths import PUBMEDQA, ROOT, SAMPLE_PATH, needs_pqal


def load_pqal() -> list[Record]:
    return load_source(DataParams(source=str(PUBMEDQA / "ori_pqal.json")), Path("."))


def ids(records):
    return [r.id for r in records]


# ---------------------------------------------------------------- official split on the real PQA-L

@needs_pqal
@pytest.mark.parametrize("fold", [0, 9])
def test_official_split_reproduces_test_ground_truth(fold):
    truth = read_json(PUBMEDQA / "test_ground_truth.json")
    train, dev, test = official_split(load_pqal(), fold)
    assert (len(train), len(dev), len(test)) == (450, 50, 500)
    assert set(ids(test)) == set(truth)
    assert {r.id: r.final_decision for r in test} == truth
    assert not set(ids(train)) & set(ids(dev)) and not (set(ids(train)) | set(ids(dev))) & set(ids(test))


@needs_pqal
def test_official_dev_folds_partition_the_cv_half():
    records = load_pqal()
    splits = [official_split(records, k) for k in range(10)]
    devs = [set(ids(dev)) for _, dev, _ in splits]
    cv_half = set(ids(splits[0][0])) | devs[0]
    assert set().union(*devs) == cv_half and sum(map(len, devs)) == 500
    # first ids of fold 0's dev set, in order, as in the official pqal_fold0/dev_set.json
    assert ids(splits[0][1])[:7] == ["15879722", "12607666", "17593459", "11882828", "23588461", "26063028",
                                     "12836106"]


def test_split_rebalances_uneven_folds_like_the_original():
    # PQA-L's label counts, fake ids: the 10-fold CV step is uneven (51 x 9 + 41) and must be rebalanced
    labels = ["yes"] * 552 + ["no"] * 338 + ["maybe"] * 110
    records = [Record(id=str(i), question="q?", contexts=["c"], final_decision=lab) for i, lab in enumerate(labels)]
    for fold in range(10):
        train, dev, test = official_split(records, fold)
        assert (len(train), len(dev), len(test)) == (450, 50, 500)
        assert Counter(r.final_decision for r in test) == {"yes": 276, "no": 169, "maybe": 55}
        assert len(set(ids(train)) | set(ids(dev)) | set(ids(test))) == 1000
    assert official_split(records, 3) == official_split(records, 3)  # deterministic


# ---------------------------------------------------------------- the bundled sample

def test_sample_split_sizes_and_stratification():
    records = load_source(DataParams(), ROOT)
    for fold in (0, 9):
        train, dev, test = official_split(records, fold)
        assert (len(train), len(dev), len(test)) == (54, 6, 60)
        assert Counter(r.final_decision for r in test) == {"yes": 30, "no": 20, "maybe": 10}
        assert not set(ids(train)) & set(ids(dev)) and not (set(ids(train)) | set(ids(dev))) & set(ids(test))


def test_sample_is_well_formed_and_matches_its_generator():
    raw = read_json(SAMPLE_PATH)
    assert SAMPLE_PATH.stat().st_size < 500_000
    spec = importlib.util.spec_from_file_location("build_sample", SAMPLE_PATH.with_name("build_sample.py"))
    build_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_sample)
    assert build_sample.build() == raw, "ori_pqal_sample.json is stale: re-run build_sample.py"

    records = load_source(DataParams(), ROOT)
    assert len(records) == 120 and ids(records) == list(raw)
    assert Counter(r.final_decision for r in records) == {"yes": 60, "no": 40, "maybe": 20}
    assert len({r.question for r in records}) == 120
    for r in records:
        assert len(r.id) == 8 and r.id.startswith("9") and r.id.isdigit()
        assert 2 <= len(r.contexts) <= 4 and len(r.labels) == len(r.contexts)
        assert 80 <= len(r.context.split()) <= 180
        assert r.long_answer and r.meshes and r.source == "original"


# ---------------------------------------------------------------- sources and their errors

def hub_rows(records: list[Record]) -> list[dict]:
    """Records -> rows in the hub schema (qiaojin/PubMedQA, pqa_labeled)."""
    return [{"pubid": int(r.id), "question": r.question,
             "context": {"contexts": r.contexts, "labels": r.labels, "meshes": r.meshes,
                         "reasoning_required_pred": ["yes"], "reasoning_free_pred": ["yes"]},
             "long_answer": r.long_answer, "final_decision": r.final_decision} for r in records]


def test_parquet_and_jsonl_hub_schema_equal_the_json_form(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    original = load_pqal() if (PUBMEDQA / "ori_pqal.json").exists() else load_source(DataParams(), ROOT)
    ds = datasets.Dataset.from_list(hub_rows(original))
    ds.to_parquet(str(tmp_path / "pqa_labeled.parquet"))
    ds.to_json(str(tmp_path / "pqa_labeled.jsonl"))
    # relative paths resolve against root
    assert load_source(DataParams(source="pqa_labeled.parquet"), tmp_path) == original
    assert load_source(DataParams(source=str(tmp_path / "pqa_labeled.jsonl")), Path("/")) == original


def test_relative_json_path_resolves_against_root(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ori.json").write_text(SAMPLE_PATH.read_text())
    assert load_source(DataParams(source="sub/ori.json"), tmp_path) == load_source(DataParams(), ROOT)


def _sample_raw() -> dict:
    return json.loads(SAMPLE_PATH.read_text())


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.__setitem__("x", d.pop(next(iter(d)))) or d["x"].pop("QUESTION"), ["PMID x", "'QUESTION'"]),
    (lambda d: d[next(iter(d))].pop("CONTEXTS"), ["'CONTEXTS'"]),
    (lambda d: d[next(iter(d))].__setitem__("final_decision", "perhaps"), ["'perhaps'", "final_decision"]),
    (lambda d: d[next(iter(d))].__setitem__("CONTEXTS", "one string"), ["'CONTEXTS' must be list"]),
])
def test_original_json_errors_name_file_pmid_and_field(tmp_path, mutate, expected):
    raw = _sample_raw()
    mutate(raw)
    path = tmp_path / "ori.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MedaugError) as e:
        load_source(DataParams(source=str(path)), tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    if "PMID x" not in expected:
        assert f"PMID {next(iter(raw))}" in msg
    for part in expected:
        assert part in msg


def test_missing_and_malformed_source_files(tmp_path):
    with pytest.raises(MedaugError, match="nope.json: file not found"):
        load_source(DataParams(source="nope.json"), tmp_path)
    with pytest.raises(MedaugError, match="nope.parquet: file not found"):
        load_source(DataParams(source="nope.parquet"), tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"QUESTION": "q?",\n  "CONTEXTS": [}')
    with pytest.raises(MedaugError, match=r"bad\.json:2: malformed JSON"):
        load_source(DataParams(source=str(bad)), tmp_path)
    with pytest.raises(MedaugError, match="data.source"):
        load_source(DataParams(source="data.csv"), tmp_path)


def test_hub_rows_errors_name_row_pubid_and_field():
    rows = hub_rows(load_source(DataParams(), Path("."))[:3])
    rows[2]["final_decision"] = "unsure"
    with pytest.raises(MedaugError, match=r"hub.parquet: row 2 \(pubid \d+\): unknown label 'unsure'"):
        from_hub_rows(rows, "hub.parquet")
    rows[2]["final_decision"] = "yes"
    del rows[1]["context"]["meshes"]
    with pytest.raises(MedaugError, match=r"row 1 \(pubid \d+\) context: missing field 'meshes'"):
        from_hub_rows(rows, "hub.parquet")
    with pytest.raises(MedaugError, match="duplicate pubid"):
        from_hub_rows([rows[0], rows[0]], "hub.parquet")


# ---------------------------------------------------------------- prepare

def test_prepare_writes_splits_contexts_and_metrics(tmp_path):
    out, metrics = tmp_path / "prepared", tmp_path / "metrics" / "prepare.json"
    stats = prepare.run(Params(), ROOT, out, metrics)
    train, dev, test = (read_records(out / f"{s}.jsonl") for s in ("train", "dev", "test"))
    expected = official_split(load_source(DataParams(), ROOT), 0)
    assert (train, dev, test) == expected
    contexts = [json.loads(line) for line in (out / "contexts.jsonl").read_text().splitlines()]
    assert [c["id"] for c in contexts] == ids(train)
    assert all(set(c) == {"id", "contexts", "meshes"} for c in contexts)
    assert not {c["id"] for c in contexts} & set(ids(test) + ids(dev))
    report = json.loads(metrics.read_text())
    assert {k: v for k, v in report.items() if k != "source"} == stats
    # what the source was: its path as params name it, the sha256 of its bytes, and its origin (the sample says so)
    digest = hashlib.sha256(SAMPLE_PATH.name.encode() + b"\0" + SAMPLE_PATH.read_bytes() + b"\0").hexdigest()
    assert report["source"] == {"path": DataParams().source, "sha256": digest,
                                "origin": json.loads((SAMPLE_PATH.parent / "medaug_source.json").read_text())}
    assert report["source"]["origin"]["synthetic"] is True
    assert stats["test"] == {"total": 60, "yes": 30, "no": 20, "maybe": 10}
    assert stats["train"]["total"] == 54 and stats["dev"]["total"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["contexts.jsonl", "dev.jsonl", "test.jsonl", "train.jsonl"]


def test_prepare_fold_changes_train_dev_only(tmp_path):
    a = prepare.run(Params(data=DataParams(fold=0)), ROOT, tmp_path / "a", tmp_path / "a.json")
    b = prepare.run(Params(data=DataParams(fold=5)), ROOT, tmp_path / "b", tmp_path / "b.json")
    assert a == b  # the sample's folds are equal-sized and equally stratified
    assert (tmp_path / "a/test.jsonl").read_text() == (tmp_path / "b/test.jsonl").read_text()
    assert (tmp_path / "a/dev.jsonl").read_text() != (tmp_path / "b/dev.jsonl").read_text()


def test_failed_prepare_leaves_no_output(tmp_path):
    bad = tmp_path / "ori.json"
    raw = _sample_raw()
    raw[list(raw)[-1]]["final_decision"] = "Yes"
    bad.write_text(json.dumps(raw))
    with pytest.raises(MedaugError, match="unknown label 'Yes'"):
        prepare.run(Params(data=DataParams(source="ori.json")), tmp_path, tmp_path / "out", tmp_path / "m.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- prepared JSONL read back

@pytest.mark.parametrize("line, expected", [
    ('{"id": "1", "question": "q?", "contexts": ["c"]', "malformed JSON"),
    ('{"id": "1", "question": "q?", "final_decision": "yes"}', "missing field 'contexts'"),
    ('{"id": "1", "question": "q?", "contexts": ["c"], "final_decision": "probably"}', "unknown label 'probably'"),
])
def test_bad_prepared_line_names_file_and_line(tmp_path, line, expected):
    prepare.run(Params(), ROOT, tmp_path / "prepared", tmp_path / "m.json")
    path = tmp_path / "prepared" / "dev.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(3, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MedaugError, match=rf"dev\.jsonl:4: .*{expected}"):
        read_records(path, LABELS)


def test_a_folder_source_and_the_keywords_that_are_no_path(tmp_path):
    """A folder with train.parquet in the hub schema (what `medaug data fetch` writes) is a source; `sample` and
    `hub`, no paths DVC could hash, are refused naming what to write instead."""
    rows = [{"pubid": int(pmid), "question": r["QUESTION"], "long_answer": r["LONG_ANSWER"],
             "final_decision": r["final_decision"],
             "context": {"contexts": r["CONTEXTS"], "labels": r["LABELS"], "meshes": r["MESHES"]}}
            for pmid, r in json.loads(SAMPLE_PATH.read_text()).items()]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "fetched" / "train.parquet"))
    assert load_source(DataParams(source="fetched"), tmp_path) == load_source(DataParams(), ROOT)
    for word, fix in (("sample", "src/medaug/data/sample/ori_pqal_sample.json"), ("hub", "medaug data fetch")):
        with pytest.raises(MedaugError, match=rf"data.source = '{word}' is no path: .*{fix}"):
            parse_params({"data": {"source": word}})
