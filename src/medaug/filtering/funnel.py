"""Stage `filter`: generated records -> kept records, rejects with their reason, and the funnel counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from medaug.data.jsonl import iter_jsonl, write_json, write_jsonl
from medaug.data.schema import Record, read_records, validate, write_records
from medaug.errors import MedaugError
from medaug.filtering.rules import (REASONS, check_duplicate, check_test_overlap, check_valid, contamination_ngrams,
                                    dedup_key, normalize)
from medaug.params import Params


def read_generated(path: Path, parents: dict[str, Record]) -> list[Record]:
    """Generated records; every parent_id must name a prepared record (a rewrite must have one)."""
    records = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rec = validate(obj, where)
        if rec.source == "rewrite" and not rec.parent_id:
            raise MedaugError(f"{where}: a record with source 'rewrite' needs 'parent_id'")
        if rec.parent_id is not None and rec.parent_id not in parents:
            raise MedaugError(f"{where}: parent_id {rec.parent_id!r} is not in the prepared data "
                              f"(generated from another prepare run? re-run generate)")
        records.append(rec)
    return records


def run(p: Params, prepared_dir: Path, generated_path: Path, out_path: Path, rejects_path: Path,
        funnel_path: Path, train_set_path: Path | None = None,
        generate_rejects_path: Path | None = None) -> dict[str, Any]:
    """Filter generated records in order: validate -> exact dedup -> test decontamination.

    `train_set_path` (optional): also write the `augmented` variant's training set there, the original train
    split followed by the kept generated records.
    `generate_rejects_path` (optional): generate's rejects (teacher errors, unusable replies); the funnel then
    starts from every item the teacher was asked for, and counts those under their reason.
    """
    prepared_dir = Path(prepared_dir)
    train, dev, test = (read_records(prepared_dir / f"{name}.jsonl") for name in ("train", "dev", "test"))
    parents = {r.id: r for r in train + dev + test}
    generated = read_generated(Path(generated_path), parents)

    n = p.filter.decontaminate_ngram
    test_ids = {r.id for r in test}
    test_grams = contamination_ngrams(test, train + dev, n)
    train_questions = {normalize(r.question) for r in train}

    kept, rejects, kept_keys = [], [], set()
    dropped = dict.fromkeys(REASONS, 0)
    by_source: dict[str, dict[str, int]] = {}
    for rec in tqdm(generated, desc="filter", unit="item"):
        reason = (check_valid(rec, parents.get(rec.parent_id or ""), p.filter)
                  or check_duplicate(rec, kept_keys, train_questions)
                  or check_test_overlap(rec, test_ids, test_grams, n))
        counts = by_source.setdefault(rec.source, {"in": 0, "kept": 0})
        counts["in"] += 1
        if reason:
            dropped[reason] += 1
            rejects.append({**rec.to_dict(), "reject_reason": reason})
        else:
            kept.append(rec)
            kept_keys.add(dedup_key(rec))
            counts["kept"] += 1

    n_in = len(generated)
    if generate_rejects_path is not None:
        for _, rej in iter_jsonl(generate_rejects_path):
            n_in += 1
            dropped[rej["reason"]] = dropped.get(rej["reason"], 0) + 1
            by_source.setdefault(rej["strategy"], {"in": 0, "kept": 0})["in"] += 1
    funnel = {"in": n_in, "kept": len(kept), "dropped": dropped, "by_source": by_source}
    assert funnel["in"] == funnel["kept"] + sum(dropped.values()), funnel
    write_records(out_path, kept)
    write_jsonl(rejects_path, rejects)
    write_json(funnel_path, funnel)
    if train_set_path is not None:
        write_records(train_set_path, train + kept)
    return funnel
