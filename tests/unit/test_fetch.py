"""`medaug data fetch` (issue 31): the task's hub dataset at a pinned revision, through the real huggingface_hub
and datasets, from a hub cache of local files in the hub's layout (offline: nothing comes from the network), into a
folder prepare reads and records."""

import json
import os

import pytest

from medaug.data import prepare
from medaug.data.fetch import fetch
from medaug.errors import MedaugError
from medaug.params import SplitParams, TaskParams, parse_params
from support.paths import ROOT, SAMPLE_PATH

pytestmark = pytest.mark.usefixtures("hf_cache")

HUB_ID = "medaug-test/pubmedqa"
OLD, NEW = "a1" * 20, "b2" * 20  # two commits of the dataset repo
README = """---
configs:
- config_name: pqa_labeled
  data_files:
  - split: train
    path: pqa_labeled/train-*
---
# a PubMedQA-schema dataset
"""


def hub_rows() -> list[dict]:
    return [{"pubid": int(pmid), "question": r["QUESTION"], "long_answer": r["LONG_ANSWER"],
             "final_decision": r["final_decision"],
             "context": {"contexts": r["CONTEXTS"], "labels": r["LABELS"], "meshes": r["MESHES"]}}
            for pmid, r in json.loads(SAMPLE_PATH.read_text()).items()]


@pytest.fixture
def hub_dataset(tmp_path, monkeypatch):
    """HUB_ID in a hub cache: commit OLD holds the sample's first 100 records, NEW (main) all 120."""
    import datasets
    from huggingface_hub import constants

    cache, rows = tmp_path / "hub", hub_rows()
    repo = cache / f"datasets--{HUB_ID.replace('/', '--')}"
    for commit, n in ((OLD, 100), (NEW, len(rows))):
        snap = repo / "snapshots" / commit
        (snap / "pqa_labeled").mkdir(parents=True)
        (snap / "README.md").write_text(README)
        datasets.Dataset.from_list(rows[:n]).to_parquet(str(snap / "pqa_labeled" / "train-00000-of-00001.parquet"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(NEW)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return TaskParams(hub_id=HUB_ID, hub_config="pqa_labeled")


def test_fetch_pins_the_revision_and_prepare_records_it(hub_dataset, tmp_path):
    out = tmp_path / "data/source/pubmedqa"
    origin = fetch(hub_dataset, out)  # no revision pinned: main, recorded as its commit
    assert origin == {"hub_id": HUB_ID, "config": "pqa_labeled", "revision": NEW, "requested": "main",
                      "rows": {"train": 120}}
    assert sorted(p.name for p in out.iterdir()) == ["medaug_source.json", "train.parquet"]
    assert json.loads((out / "medaug_source.json").read_text()) == origin

    # prepare reads the folder as data.source and records where it came from
    p = parse_params({"data": {"source": "data/source/pubmedqa"}}, ROOT)
    prepare.run(p, tmp_path, tmp_path / "prepared", tmp_path / "prepare.json")
    from_hub = (tmp_path / "prepared/test.jsonl").read_text()
    prepare.run(parse_params({}, ROOT), ROOT, tmp_path / "sample", tmp_path / "sample.json")
    assert from_hub == (tmp_path / "sample/test.jsonl").read_text()  # the same records, from the hub's schema
    source = json.loads((tmp_path / "prepare.json").read_text())["source"]
    assert source["path"] == "data/source/pubmedqa" and source["origin"] == origin and len(source["sha256"]) == 64

    # a pinned older revision gets that commit's bytes, and another digest
    pinned = fetch(TaskParams(hub_id=HUB_ID, hub_config="pqa_labeled", hub_revision=OLD), out)
    assert (pinned["revision"], pinned["rows"]) == (OLD, {"train": 100})
    assert prepare.provenance("data/source/pubmedqa", tmp_path)["sha256"] != source["sha256"]


def test_fetch_errors_name_the_dataset_and_leave_the_folder(hub_dataset, tmp_path):
    out = tmp_path / "fetched"
    fetch(hub_dataset, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(MedaugError, match=rf"cannot download the dataset {HUB_ID}@{'3' * 40} \(") as e:
        fetch(TaskParams(hub_id=HUB_ID, hub_config="pqa_labeled", hub_revision="3" * 40), out)
    assert "\n" not in str(e.value)
    with pytest.raises(MedaugError, match=r"cannot download the dataset medaug-test/no-such-dataset@main"):
        fetch(TaskParams(hub_id="medaug-test/no-such-dataset"), out)
    with pytest.raises(MedaugError, match=r"has no readable split 'test'"):
        fetch(TaskParams(hub_id=HUB_ID, hub_config="pqa_labeled", split=SplitParams(kind="given")), out)
    with pytest.raises(MedaugError, match=r"names no hub dataset \(hub_id\)"):
        fetch(TaskParams(hub_id=""), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # a failed fetch keeps what was there
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".fetching")]


def test_the_cli_fetches_the_task_files_pinned_revision_and_says_what_to_set(hub_dataset, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from medaug.cli import cli

    task = (ROOT / "src/medaug/tasks/pubmedqa.yaml").read_text().replace("hub_id: qiaojin/PubMedQA", f"hub_id: {HUB_ID}")
    (tmp_path / "params.yaml").write_text("task:\n  file: task.yaml\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.yaml").write_text(task + "hub_revision: 1234567\n")  # a sha of digits reads as a number
    result = CliRunner().invoke(cli, ["data", "fetch"])
    assert result.exit_code == 1 and "hub_revision = 1234567 is not valid" in str(result.exception)
    assert "quote it to keep it text" in str(result.exception)
    (tmp_path / "task.yaml").write_text(task + f"hub_revision: {OLD}\n")
    result = CliRunner().invoke(cli, ["data", "fetch"])
    assert result.exit_code == 0, result.output
    origin = json.loads((tmp_path / "data/source/pubmedqa/medaug_source.json").read_text())
    assert (origin["revision"], origin["requested"]) == (OLD, OLD)
    assert "set `data.source: data/source/pubmedqa` in params.yaml" in result.output
    assert "dvc add data/source/pubmedqa" in result.output and "pin" not in result.output  # pinned already
    result = CliRunner().invoke(cli, ["data", "fetch", "--revision", "main", "--out", "elsewhere"])
    assert result.exit_code == 0 and f"pin `hub_revision: {NEW}` in task.yaml" in result.output, result.output
