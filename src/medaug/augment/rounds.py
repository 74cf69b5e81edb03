"""The student in the loop (issue 34, LLM2LLM): rounds of generation aimed at what the current student gets wrong.

A recipe with `rounds: N` (listed in train.rounds) is a chain per model and seed. Round 0 is the `original`
candidate; round k = 1..N is three DVC stages and a candidate (dvc.yaml's round stages, `medaug.dag`):

- `probe-r<k>` scores round k-1's student on the *train split* (`evaluate.probe`): each item's prediction, the
  log-prob of every answer and the margin of the gold one (never dev or test, which pick checkpoints and judge);
- `teach-r<k>` (`teach`) picks the round's parents from those scores (`targeting.pick`: errors, margin or
  random, at most `per_round`, original items only), asks the teacher for new items from them with the recipe's
  strategies (one request per parent and strategy, as sample k: a parent picked again in a later round gets
  another answer, and the same parent in the random control the same one), runs the whole filter chain on them
  (dedup against the train split and every earlier round's items, decontamination against test) and writes the
  round's training set: round k-1's plus what it kept;
- `train-r<k>` and `evaluate-r<k>` train and score candidate <model>-<recipe>-r<k>-<seed> like any other.

Every stage is a matrix over train.models, train.rounds and train.seeds (medaug/dag.py), so round 1 of each recipe
probes the same `original` student again: one scoring of the train split per recipe, the price of a fixed matrix.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from pathlib import Path
from typing import Any

from medaug.augment import generate
from medaug.targeting import check_round, pick
from medaug.data import datacard
from medaug.data.jsonl import atomic_path, iter_jsonl, read_json, write_json, write_jsonl
from medaug.data.leakage import Contamination
from medaug.data.schema import read_records, write_records
from medaug.errors import MedaugError
from medaug.filtering import funnel as filtering
from medaug.filtering.steps import Context
from medaug.params import Params, rekeyed, untraced
from medaug.paths import ROUND_REPORTS, Candidate, TeachIO

log = logging.getLogger(__name__)


# --- teach-r<k> ------------------------------------------------------------------------------------------------


def read_probe(path: Path, train_ids: list[str]) -> list[dict[str, Any]]:
    """A probe's rows, which must score exactly the train split."""
    if not Path(path).exists():
        raise MedaugError(f"{path}: not found; run `dvc repro` (the probe stage of the round before writes it)")
    rows = [row for _, row in iter_jsonl(path)]
    if sorted(r.get("id") for r in rows) != sorted(train_ids):
        raise MedaugError(f"{path}: it scores {len(rows)} items, not the {len(train_ids)} of the train split; "
                          f"re-run its probe stage")
    return rows


def teach(p: Params, c: Candidate, io: TeachIO, root: Path) -> dict[str, Any]:
    """Round `c.round` of recipe `c.recipe` for `c`: its parents, the teacher's items from them, the filter, the
    round's training set (see the module docstring). Writes io.out/{parents,generated,rejects,kept,train}.jsonl and
    the report, and returns it."""
    with untraced():  # validation: dvc.yaml runs only the rounds params ask for
        check_round(p, c)
    recipe = p.variants[c.recipe]
    k = c.round
    choices = p.task.choices
    train, dev, test = (read_records(Path(io.prepared) / f"{n}.jsonl", choices) for n in ("train", "dev", "test"))
    by_id = {r.id: r for r in train}
    rows = read_probe(io.probe, list(by_id))
    picked = pick(recipe.pick, rows, recipe.per_round, c.seed * 1000 + k, by_id)
    if not picked:
        raise MedaugError(f"{c.stage('teach')}: the student {c.previous.name} got no train item wrong, so "
                          f"`pick: errors` finds no parent: use `pick: margin`, or fewer rounds")
    scores = {row["id"]: row for row in rows}
    before = read_records(io.before, choices)
    earlier = [r for r in before if r.id not in by_id]  # the items of earlier rounds

    with untraced():  # the round's own generate section: the recipe's strategies, one request per parent
        gen = dataclasses.replace(p.generate, strategies=list(recipe.strategies), per_strategy=0)
        q = rekeyed(dataclasses.replace(p, generate=gen))
    stats: dict[str, Any] = {}
    leak = Contamination.of_split(io.prepared, p.filter.decontaminate.ngram) if gen.uses_corpus else None
    jobs = generate.plan(q, [by_id[i] for i in picked], root, leak, stats)
    if any(j.parent_id is None for j in jobs):
        raise MedaugError(f"params.yaml: variants.{c.recipe}.strategies: "
                          f"{', '.join(sorted({j.strategy for j in jobs if j.parent_id is None}))} writes from "
                          f"corpus passages, not from parents; a round takes strategies that rewrite or write from "
                          f"train items (rewrite, new)")
    jobs = [dataclasses.replace(j, sample=j.sample * 1000 + k) for j in jobs]
    generated, gen_rejects, asked = generate.answer(q, root, jobs, stats, c.stage("teach"))
    ctx = Context(p, root, train, dev, test, earlier=earlier, picked=True)
    kept, filter_rejects, funnel = filtering.apply(p, ctx, generated, gen_rejects)

    previous = Path(root) / ROUND_REPORTS / f"{c.previous.name}.json"
    cost_before = read_json(previous)["cost_usd_total"] if k > 1 else 0.0
    cost = asked["teacher"]["cost_usd"] + asked["teacher"]["cost_usd_saved"]  # cache hits at what they cost once
    if funnel.get("teacher"):
        cost += funnel["teacher"]["cost_usd"] + funnel["teacher"]["cost_usd_saved"]
    wrong = [row for row in rows if row["prediction"] != row["gold"]]
    report = {
        "candidate": c.name, "recipe": c.recipe, "round": k, "student": c.previous.name,
        "pick": recipe.pick, "per_round": recipe.per_round,
        "student_on_train": {"n": len(rows), "errors": len(wrong), "error_rate": len(wrong) / len(rows)},
        "parents": {"n": len(picked), "wrong": sum(scores[i]["prediction"] != scores[i]["gold"] for i in picked),
                    "mean_margin": statistics.fmean(scores[i]["margin"] for i in picked)},
        "asked": asked["requested"], "generated": len(generated), "kept": len(kept),
        "dropped": funnel["dropped"], "funnel": funnel, "teacher": asked["teacher"],
        "cost_usd": round(cost, 6), "cost_usd_total": round(cost_before + cost, 6),
        "items": len(before) + len(kept), "generated_total": len(earlier) + len(kept)}
    out = Path(io.out)
    write_jsonl(out / "parents.jsonl", [{"id": i, "gold": scores[i]["gold"], "prediction": scores[i]["prediction"],
                                         "margin": scores[i]["margin"]} for i in picked])
    write_records(out / "generated.jsonl", generated)
    write_jsonl(out / "rejects.jsonl", gen_rejects + filter_rejects)
    write_records(out / "kept.jsonl", kept)
    write_records(out / "train.jsonl", before + kept)
    write_json(io.report, report)
    if io.card is not None:  # what register embeds when this round's student is the champion
        card = datacard.render(p, train, generated, kept, funnel, recipe=c.recipe).split("\n", 1)[1]
        with atomic_path(io.card) as tmp:
            tmp.write_text(f"# Data card: `{c.name}`, round {k} of recipe `{c.recipe}`\n\nIts training set: the "
                           f"`{c.previous.name}` set ({len(before)} items, {len(earlier)} of them from earlier rounds:"
                           f" their cards beside this one) and the {len(kept)} items below.\n{card}",
                           encoding="utf-8")
    log.info(f"{c.stage('teach')}: {len(picked)} parents ({report['parents']['wrong']} wrong), "
             f"{asked['requested']} asked, {len(kept)} kept; training set {report['items']} items")
    return report
