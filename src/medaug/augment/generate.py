"""The generate stage: every strategy of `generate.strategies` (augment/strategies/, one module each) plans its
requests, the teachers answer them, and each valid reply becomes a record whose `source` names the strategy.
Strategies mix in one run; a strategy with several teachers (`generate.teachers`) asks each about the same items.

The teacher layer (medaug.llm) asks for JSON, repairs a bad reply once and accounts for every request; a strategy
says what to ask and what to keep; this module runs them, writes the records, the rejects (each with its reason;
a label outside the task's choices is `bad_label`) and the stage's report.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medaug.augment import strategies
from medaug.augment.strategies.base import Job
from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.leakage import Contamination
from medaug.data.schema import Record, read_records, write_records
from medaug.llm.structured import JsonReply, complete_json
from medaug.llm.limits import Meter
from medaug.llm.teacher import Request, Usage, make_teacher, raise_for_failures
from medaug.params import Params
from medaug.paths import GenerateIO

log = logging.getLogger(__name__)
_BAD_ANSWER = re.compile(r"bad_value_answer\d*")
"""The teacher layer's reason for an answer outside the reply schema's enum: the task's choices."""


def plan(p: Params, train: list[Record], root: Path = Path("."), leak: Contamination | None = None,
         stats: dict[str, Any] | None = None) -> list[Job]:
    """Every request the stage makes, strategies in params order, after `strategies.check` (names known, each
    serving the task). `leak`: the test split's contamination check, for strategies that read the corpus (their
    passages that leak are dropped and counted in `stats`). A strategy with several teachers (`generate.teachers`)
    asks each of them about the same items, teacher by teacher, and its job ids end in @<model>."""
    strategies.check(p)
    ctx = {"leak": leak, "stats": stats}
    jobs = []
    for name in p.generate.strategies:
        planned = strategies.get(name).plan(p, train, Path(root), ctx)
        models = [tp.model for tp in p.teachers_for(name)]
        jobs += planned if len(models) == 1 else [replace(j, teacher=m) for m in models for j in planned]
    return jobs


def plan_split(p: Params, root: Path, prepared_dir: Path, stats: dict[str, Any] | None = None) -> list[Job]:
    """`plan` on the prepared split: its train records, and (corpus passages only) its test split's leak check."""
    leak = (Contamination.of_split(prepared_dir, p.filter.decontaminate.ngram)
            if p.generate.uses_corpus else None)
    return plan(p, read_records(Path(prepared_dir) / "train.jsonl"), root, leak, stats)


# --- the stage ---------------------------------------------------------------------------------------------------


def dry_run(p: Params, root: Path, prepared_dir: Path) -> dict[str, Any]:
    """What `run` would ask the teacher, and at most what it would cost, without asking anything."""
    jobs = plan_split(p, root, prepared_dir)
    total: dict[str, Any] = {}
    for tp, group in by_teacher(p, jobs):
        est = make_teacher(tp, Path(root)).estimate(
            [Request.user(j.prompt(), j.sample, j.schema) for j in group])
        repairs = est["to_send"] * tp.repair_attempts
        print(f"generate --dry-run: {est['requests']} requests ({est['cached']} cached, {est['to_send']} to send) "
              f"to {tp.backend}:{tp.model}\n"
              f"  tokens: ~{est['input_tokens_est']:,} prompt (4 chars/token) + at most {est['output_tokens_max']:,} "
              f"reply\n  cost: at most ${est['cost_usd_max']:.4f} (a prompt's tokens bounded by its UTF-8 bytes; "
              f"prices: teacher.prices{', at their batch share (teacher.batch)' if tp.batch else ''}; "
              f"budget for the stage: "
              f"{'$%g' % p.teacher.budget_usd if p.teacher.budget_usd else 'none'}), plus up to {repairs} repair "
              f"requests for replies that fail validation")
        total = {k: total.get(k, 0) + v for k, v in est.items()}
    return total


def by_teacher(p: Params, jobs: Sequence[Job]) -> list[tuple[Any, list[Job]]]:
    """The jobs grouped by the teacher that answers them (`generate.teachers`), in first-use order."""
    groups: dict[str, tuple[Any, list[Job]]] = {}
    for job in jobs:
        tp = p.teacher_for(job.strategy, job.teacher)
        groups.setdefault(repr(tp), (tp, []))[1].append(job)
    return list(groups.values())


def ask(teacher: Any, jobs: Sequence[Job]) -> list[JsonReply]:
    """One reply per job, in order; one batch per sample index (most runs have only sample 0)."""
    replies: list[JsonReply | None] = [None] * len(jobs)
    for sample in sorted({j.sample for j in jobs}):
        idx = [i for i, j in enumerate(jobs) if j.sample == sample]
        out = complete_json(teacher, [jobs[i].prompt() for i in idx], [jobs[i].schema for i in idx],
                            [jobs[i].check for i in idx], sample,
                            desc=f"generate ({teacher.name})" + (f" sample {sample}" if sample else ""))
        for i, reply in zip(idx, out):
            replies[i] = reply
    return replies  # type: ignore[return-value]


def run(p: Params, root: Path, io: GenerateIO) -> dict[str, Any]:
    """The generate stage: every strategy's jobs planned on `io.prepared`'s train split, asked of their teachers
    (their cache under `root`); the usable items to `io.generated`, the rest with their reason to `io.rejects`, the
    report to `io.report`."""
    stats: dict[str, Any] = {}
    generated, rejects, metrics = answer(p, root, plan_split(p, root, io.prepared, stats), stats, "generate")
    write_records(io.generated, generated)
    write_jsonl(io.rejects, rejects)
    write_json(io.report, metrics)
    return metrics


def answer(p: Params, root: Path, planned: list[Job], stats: dict[str, Any], stage: str
           ) -> tuple[list[Record], list[dict[str, Any]], dict[str, Any]]:
    """(records, rejects with their reason, the report) of `planned` asked of their teachers (their cache under
    `root`), under one budget; `stage` names the stage in the failure it raises when more requests failed than
    teacher.max_failed_share allows (after every reply is cached)."""
    jobs, replies, names, usage = [], [], [], {}
    meter = Meter(p.teacher.budget_usd)  # one budget for the stage, whichever teachers it asks
    for tp, group in by_teacher(p, planned):
        teacher = make_teacher(tp, Path(root), meter)
        jobs += group
        replies += ask(teacher, group)
        names += [teacher.name] * len(group)
        usage[teacher.name] = usage[teacher.name] + teacher.usage if teacher.name in usage else teacher.usage
    u = sum(usage.values(), Usage())
    generated: list[Record] = []
    rejects: list[dict[str, Any]] = []
    by_strategy: dict[str, dict[str, Any]] = {}
    cost_by: dict[str, dict[str, float]] = {}  # strategy -> teacher -> what its requests cost, rejects included
    for job, reply, name in zip(jobs, replies, names):
        pair = cost_by.setdefault(job.strategy, {})
        pair[name] = pair.get(name, 0.0) + reply.cost_usd
        counts = by_strategy.setdefault(job.strategy, {"requested": 0, "generated": 0, "repaired": 0, "rejects": {}})
        counts["requested"] += 1
        where = {k: v for k, v in (("grounding", job.grounding), ("heading", job.heading)) if v}
        if reply.value is None:
            if _BAD_ANSWER.fullmatch(reply.reason or ""):
                reply = replace(reply, reason="bad_label")
            counts["rejects"][reply.reason] = counts["rejects"].get(reply.reason, 0) + 1
            rejects.append({"id": job.id, "parent_id": job.parent_id, "strategy": job.strategy, "teacher": name,
                            **where, **({"target": job.target} if job.target else {}), "reason": reply.reason,
                            "teacher_error": reply.error, "replies": reply.replies, "request_sha": reply.request_sha})
            continue
        counts["repaired"] += reply.repaired
        base = {"id": job.id, "contexts": list(job.item.contexts), "meshes": list(job.item.meshes),
                "labels": job.item.labels, "source": job.strategy, "parent_id": job.parent_id,
                "teacher": {"model": name, "prompt_sha": job.prompt_sha, "request_sha": reply.request_sha, **where}}
        steps = reply.value.get("chain") or [reply.value]  # a progressive reply: a record per step
        generated += [Record(**base | fields | ({"id": f"{job.id}-{n}"} if "chain" in reply.value else {}))
                      for n, fields in enumerate(steps, 1)]
        counts["generated"] += len(steps)
    reasons = Counter(r["reason"] for r in rejects)
    labels: dict[str, dict[str, int]] = {}
    for r in generated:
        labels.setdefault(r.source, dict.fromkeys(p.task.choices, 0))[r.final_decision] += 1
    metrics = {"requested": len(jobs), "generated": len(generated), "repaired": sum(r.repaired for r in replies),
               "rejects": dict(sorted(reasons.items())), "teacher": u.as_dict(),
               "by_strategy": by_strategy, "labels": labels,
               "cost_usd_by_source": {s: {t: round(c, 6) for t, c in by.items()} for s, by in cost_by.items()},
               **stats}
    if len(usage) > 1:
        metrics["by_teacher"] = {name: x.as_dict() for name, x in usage.items()}
    raise_for_failures(stage, u, p.teacher.max_failed_share)
    log.info(f"{stage}: {len(generated)} records from {len(jobs)} items ({len(rejects)} rejected: "
             f"{', '.join(f'{k} {v}' for k, v in sorted(reasons.items())) or 'none'}); teacher: {u.requests} requests, "
             f"{u.cache_hits} cached, {u.failed} failed, {u.input_tokens:,}+{u.output_tokens:,} tokens, "
             f"${u.cost_usd:.4f}")
    return generated, rejects, metrics
