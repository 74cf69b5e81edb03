"""Stage `filter`: generated records -> kept records, rejects with their step and reason, the funnel counts."""

from __future__ import annotations

import logging

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medaug.data.jsonl import atomic_path, iter_jsonl, write_json, write_jsonl
from medaug.data.mesh import load_descriptors
from medaug.data.schema import Record, read_records, validate, write_records
from medaug.errors import MedaugError
from medaug.data import datacard
from medaug.filtering.llm_checks import PROMPT_SHAS, SCHEMAS
from medaug.filtering import steps as filter_steps
from medaug.filtering.steps import STEPS, Context
from medaug.params import Params
from medaug.paths import FilterIO

log = logging.getLogger(__name__)


def read_generated(path: Path, parents: dict[str, Record], labels: Sequence[str]) -> list[Record]:
    """Generated records, answers among `labels` (the task's choices); ids are unique (the steps drop records
    by id), and every parent_id names a prepared record (a rewrite must have one)."""
    records, lines = [], {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rec = validate(obj, where, labels)
        if rec.id in lines:
            raise MedaugError(f"{where}: id {rec.id!r} is also on line {lines[rec.id]} (each generated record "
                              f"needs its own id: re-run generate, or remove the copy)")
        lines[rec.id] = lineno
        if rec.source == "rewrite" and not rec.parent_id:
            raise MedaugError(f"{where}: a record with source 'rewrite' needs 'parent_id'")
        if rec.parent_id is not None and rec.parent_id not in parents:
            raise MedaugError(f"{where}: parent_id {rec.parent_id!r} is not in the prepared data "
                              f"(generated from another prepare run? re-run generate)")
        records.append(rec)
    return records


def read_generate_rejects(path: Path) -> list[dict[str, Any]]:
    """generate's reject lines; the funnel counts each under its `strategy` and `reason`."""
    rejects = []
    for lineno, rej in iter_jsonl(path):
        for key in ("strategy", "reason"):
            if not isinstance(rej.get(key), str) or not rej[key]:
                raise MedaugError(f"{path}:{lineno}: a generate reject needs a non-empty string '{key}' (got "
                                  f"{rej.get(key)!r}; written by another version of generate? re-run generate)")
        rejects.append(rej)
    return rejects


def run(p: Params, io: FilterIO, root: Path | None = None) -> dict[str, Any]:
    """Apply `filter.steps` in order to the generated records; write the kept ones, the rejects (with the step
    and reason), the funnel, its bar plot and the data card (the last two when `io` names them). `root`: where
    the judge's teacher cache and the MeSH descriptors are (default: the working directory).

    `io.generate_rejects` (optional): generate's rejects (teacher errors, unusable replies); the funnel then
    starts from every item the teacher was asked for, with `generate` as its first step.
    """
    filter_steps.check(p)
    train, dev, test = (read_records(Path(io.prepared) / f"{name}.jsonl") for name in ("train", "dev", "test"))
    ctx = Context(p, Path(root or "."), train, dev, test)
    generated = read_generated(Path(io.generated), ctx.parents, p.task.choices)
    gen_rejects = read_generate_rejects(Path(io.generate_rejects)) if io.generate_rejects is not None else None
    alive, rejects, funnel = apply(p, ctx, generated, gen_rejects)
    write_records(io.kept, alive)
    write_jsonl(io.rejects, rejects)
    write_json(io.funnel, funnel)
    if io.plot is not None:
        write_json(io.plot, [{"step": name, "items": step["out"]} for name, step in
                               [("in", {"out": funnel["in"]}), *funnel["steps"].items()]])
    if io.datacard is not None:
        with atomic_path(io.datacard) as tmp:
            mc = "_options" if p.task.answer == "options" else ""
            prompts = {f"filter {k}": PROMPT_SHAS.get(k + mc, PROMPT_SHAS[k]) for k in SCHEMAS if k in p.filter.steps}
            descriptors = p.generate.mesh.descriptors and load_descriptors(ctx.root / p.generate.mesh.descriptors)
            tmp.write_text(datacard.render(p, train, generated, alive, funnel, prompts, descriptors or None),
                           encoding="utf-8")
    return funnel


def apply(p: Params, ctx: Context, generated: list[Record], gen_rejects: list[dict[str, Any]] | None
          ) -> tuple[list[Record], list[dict[str, Any]], dict[str, Any]]:
    """(kept records, rejects with their step and reason, the funnel) of `filter.steps` over `generated`, in
    `ctx` (its train records are what dedup compares with). `gen_rejects`: generate's, counted as step
    `generate`."""
    steps: dict[str, dict[str, Any]] = {}
    # per strategy and per teacher model: in, kept, and how many each step dropped
    by_source: dict[str, dict[str, Any]] = {}
    by_teacher: dict[str, dict[str, Any]] = {}

    def rows(strategy: str, teacher: str) -> list[dict[str, Any]]:
        return [by.setdefault(name, {"in": 0, "kept": 0, "dropped": {}})
                for by, name in ((by_source, strategy), (by_teacher, teacher))]

    def count_drop(strategy: str, teacher: str, step: str) -> None:
        for row in rows(strategy, teacher):
            row["dropped"][step] = row["dropped"].get(step, 0) + 1

    for rec in generated:
        for row in rows(rec.source, rec.teacher_model):
            row["in"] += 1
    if gen_rejects is not None:
        for rej in gen_rejects:
            for row in rows(rej["strategy"], str(rej.get("teacher", ""))):
                row["in"] += 1
            count_drop(rej["strategy"], str(rej.get("teacher", "")), "generate")
        steps["generate"] = {"in": len(generated) + len(gen_rejects), "out": len(generated),
                             "dropped": dict(sorted(Counter(r["reason"] for r in gen_rejects).items()))}

    alive, rejects = list(generated), []
    for name in p.filter.steps:
        drops = STEPS[name](alive, ctx)
        steps[name] = {"in": len(alive), "out": len(alive) - len(drops),
                       "dropped": dict(sorted(Counter(drops.values()).items()))}
        for r in alive:
            if r.id in drops:
                rejects.append({**r.to_dict(), "reject_step": name, "reject_reason": drops[r.id]})
                count_drop(r.source, r.teacher_model, name)
        alive = [r for r in alive if r.id not in drops]
        log.info(f"filter: {name}: {steps[name]['in']} -> {steps[name]['out']} "
                 f"{steps[name]['dropped'] or ''}")
    broken = {rej["chain"]["id"] for rej in rejects if rej.get("chain")}
    if broken:  # a progressive chain is kept or dropped whole: the steps left of a chain that lost one go too
        cut = {r.id for r in alive if r.chain and r.chain["id"] in broken}
        steps["chains"] = {"in": len(alive), "out": len(alive) - len(cut),
                           "dropped": {"chain_dropped": len(cut)} if cut else {}}
        for r in alive:
            if r.id in cut:
                rejects.append({**r.to_dict(), "reject_step": "chains", "reject_reason": "chain_dropped"})
                count_drop(r.source, r.teacher_model, "chains")
        alive = [r for r in alive if r.id not in cut]
    for rec in alive:
        for row in rows(rec.source, rec.teacher_model):
            row["kept"] += 1

    dropped: Counter = Counter()
    for step in steps.values():
        dropped.update(step["dropped"])
    first = next(iter(steps.values()), {"in": len(generated)})
    funnel = {"in": first["in"], "kept": len(alive), "dropped": dict(sorted(dropped.items())), "steps": steps,
              "by_source": by_source}
    if len(by_teacher) > 1:  # several teachers: the funnel of each (one teacher: the totals above)
        funnel["by_teacher"] = by_teacher
    if ctx.teacher_used:
        # who the judge/consistency steps asked (filter.teacher, else teacher), what they asked, and the cost
        funnel["teacher"] = {"model": f"{ctx.teacher.tp.backend}:{ctx.teacher.tp.model}", **ctx.teacher.usage.as_dict()}
    assert funnel["in"] == funnel["kept"] + sum(dropped.values()), funnel
    return alive, rejects, funnel
