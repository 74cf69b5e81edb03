"""Bad input fails loudly: one MedaugError line naming the file, the line and the fix, and no output written.
Outputs follow the process umask like a plain open() / mkdir()."""

import json
import os
import stat
from pathlib import Path

import pytest

from medaug import filtering
from medaug.data import prepare
from medaug.data.jsonl import iter_jsonl, write_json, write_jsonl
from medaug.data.schema import Record, read_records, write_records
from medaug.errors import MedaugError
from medaug.params import DataParams, Params
from medaug.paths import FilterIO
from support.paths import ROOT, SAMPLE_PATH

LATIN1 = "Sjögren".encode("latin-1")  # b"Sj\xf6gren": a common non-UTF-8 export


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def sample_items() -> list[tuple[str, dict]]:
    return list(json.loads(SAMPLE_PATH.read_text()).items())


def write_pqal(path: Path, items: list[tuple[str, dict]]) -> None:
    """ori_pqal.json with one PMID per line (so a line number is a record's index + 2); keys may repeat."""
    path.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items) + "\n}\n")


def run_prepare(tmp_path: Path, source: Path) -> None:
    prepare.run(Params(data=DataParams(source=str(source))), tmp_path, tmp_path / "out", tmp_path / "m.json")


def assert_no_prepare_output(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- ori_pqal.json (point 14)

def test_a_pmid_listed_twice_is_refused_naming_it_and_its_line(tmp_path):
    items = sample_items()
    twice = items[7]
    path = tmp_path / "ori_pqal.json"
    write_pqal(path, [*items, (twice[0], {**twice[1], "QUESTION": "A later copy?"})])
    with pytest.raises(MedaugError) as e:
        run_prepare(tmp_path, path)
    assert one_line(e).startswith(f"{path}:{len(items) + 2}: key '{twice[0]}' appears twice")
    assert "remove or merge the duplicate" in str(e.value)
    assert_no_prepare_output(tmp_path)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 19, 40])
def test_too_few_records_for_the_official_split_fail_with_the_minimum(tmp_path, n):
    path = tmp_path / "ori_pqal.json"
    write_pqal(path, sample_items()[:n])
    with pytest.raises(MedaugError) as e:
        run_prepare(tmp_path, path)
    msg = one_line(e)
    assert msg.startswith(f"data.source {path}: {n} records (yes ")
    assert "at least 20 records" in msg and "all 10 CV folds" in msg
    assert_no_prepare_output(tmp_path)


def test_enough_records_with_a_label_too_rare_for_every_fold_fail_the_same_way(tmp_path):
    items = [(k, v) for k, v in sample_items() if v["final_decision"] == "yes"][:30]
    path = tmp_path / "ori_pqal.json"
    write_pqal(path, items)
    with pytest.raises(MedaugError, match=r": 30 records \(yes 30, no 0, maybe 0\) leave a part of the official "
                                          r"split empty: it needs at least 20 records"):
        run_prepare(tmp_path, path)
    assert_no_prepare_output(tmp_path)


# ---------------------------------------------------------------- non-UTF-8 (point 15)

def test_non_utf8_ori_pqal_names_file_line_and_fix(tmp_path):
    path = tmp_path / "ori_pqal.json"
    write_pqal(path, sample_items())
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"?", b"? " + LATIN1, 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(MedaugError) as e:
        run_prepare(tmp_path, path)
    assert one_line(e).startswith(f"{path}:5: not UTF-8 (byte 0xf6 at byte offset ")
    assert "re-encode the file as UTF-8" in str(e.value)
    assert_no_prepare_output(tmp_path)


def test_non_utf8_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": "' + LATIN1 + b'"}\n')
    with pytest.raises(MedaugError) as e:
        list(iter_jsonl(path))
    assert one_line(e).startswith(f"{path}:3: not UTF-8 (byte 0xf6")


# ---------------------------------------------------------------- the filter stage's inputs (point 15)

@pytest.fixture()
def filter_project(tmp_path):
    """Prepared data, a generated file of two good rewrites, and stale outputs that a failed run must keep."""
    prepare.run(Params(), ROOT, tmp_path / "prepared", tmp_path / "prepare.json")
    train = read_records(tmp_path / "prepared" / "train.jsonl")
    generated = [Record(id=f"g{i}", question=f"Did the study of item {i} find a clear benefit?",
                        contexts=t.contexts, final_decision=t.final_decision, source="rewrite", parent_id=t.id)
                 for i, t in enumerate(train[:2])]
    write_records(tmp_path / "generated.jsonl", generated)
    write_jsonl(tmp_path / "gen_rejects.jsonl", [{"id": "g9", "strategy": "new", "reason": "invalid_json"}])
    outputs = [tmp_path / name for name in ("kept.jsonl", "rejects.jsonl", "funnel.json")]
    for out in outputs:
        out.write_text("stale\n")
    return tmp_path, generated, outputs


def run_filter(root: Path) -> dict:
    return filtering.run(Params(), FilterIO(root / "prepared", root / "generated.jsonl", root / "kept.jsonl",
                                            root / "rejects.jsonl", root / "funnel.json", root / "gen_rejects.jsonl"),
                         root=root)


def test_filter_runs_on_the_fixture(filter_project):
    root, _, _ = filter_project
    assert run_filter(root)["in"] == 3


def test_a_duplicated_generated_id_names_both_lines(filter_project):
    root, generated, outputs = filter_project
    write_records(root / "generated.jsonl", [*generated, generated[0]])
    with pytest.raises(MedaugError) as e:
        run_filter(root)
    assert one_line(e) == (f"{root / 'generated.jsonl'}:3: id 'g0' is also on line 1 (each generated record "
                           f"needs its own id: re-run generate, or remove the copy)")
    assert all(out.read_text() == "stale\n" for out in outputs)


def test_non_utf8_generated_line_names_file_and_line(filter_project):
    root, _, outputs = filter_project
    path = root / "generated.jsonl"
    path.write_bytes(path.read_bytes().replace(b"item 1", b"item " + LATIN1))
    with pytest.raises(MedaugError) as e:
        run_filter(root)
    assert one_line(e).startswith(f"{path}:2: not UTF-8")
    assert all(out.read_text() == "stale\n" for out in outputs)


@pytest.mark.parametrize("reject, field", [
    ({"id": "g8", "reason": "invalid_json"}, "strategy"),
    ({"id": "g8", "strategy": "new"}, "reason"),
    ({"id": "g8", "strategy": ["new"], "reason": "invalid_json"}, "strategy"),
])
def test_a_generate_reject_without_strategy_or_reason_names_file_and_line(filter_project, reject, field):
    root, _, outputs = filter_project
    write_jsonl(root / "gen_rejects.jsonl", [{"id": "g9", "strategy": "new", "reason": "invalid_json"}, reject])
    with pytest.raises(MedaugError) as e:
        run_filter(root)
    assert one_line(e).startswith(f"{root / 'gen_rejects.jsonl'}:2: a generate reject needs a non-empty string "
                                  f"'{field}'")
    assert "re-run generate" in str(e.value)
    assert all(out.read_text() == "stale\n" for out in outputs)


# ---------------------------------------------------------------- permissions follow the umask (point 17)

@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    write_jsonl(tmp_path / "new" / "rows.jsonl", [{"a": 1}])
    write_json(tmp_path / "m.json", {"a": 1})
    assert mode(tmp_path / "new" / "rows.jsonl") == mode(tmp_path / "m.json") == 0o666 & ~umask
    assert mode(tmp_path / "new") == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["m.json", "new", "rows.jsonl"]  # no temp left


def test_saved_model_folders_follow_the_umask(tmp_path, umask):
    from medaug.train.loop import save_atomically

    out = tmp_path / "models" / "m"
    save_atomically(out, lambda d: (d / "weights.bin").write_bytes(b"w"))
    save_atomically(out, lambda d: (d / "weights.bin").write_bytes(b"v"))  # replaces the first
    assert (out / "weights.bin").read_bytes() == b"v" and mode(out) == 0o777 & ~umask
    assert [p.name for p in out.parent.iterdir()] == ["m"]


def test_the_local_model_cache_follows_the_umask(tmp_path, umask, monkeypatch):
    from medaug.models import resolve

    monkeypatch.setenv("MEDAUG_CACHE", str(tmp_path / "cache"))
    built = Path(resolve("tiny-gpt2"))
    assert mode(built) == 0o777 & ~umask
    assert (built / "config.json").exists() and mode(built / "config.json") == 0o666 & ~umask
