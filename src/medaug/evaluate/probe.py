"""Stage `probe-r<k>` (issue 34, augment/rounds.py): a student scored on the *train split*, each item's prediction,
the log-prob of every answer and the margin of the gold one: what round k picks its parents from. Never dev or
test: dev picks checkpoints and test judges."""

from __future__ import annotations

import logging
import statistics
from typing import Any

from medaug.targeting import check_round, margin
from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.evaluate.evaluate import load_candidate
from medaug.evaluate.scorer import Scorer
from medaug.params import Params, untraced
from medaug.paths import Candidate, ProbeIO

log = logging.getLogger(__name__)


def probe(p: Params, c: Candidate, io: ProbeIO) -> dict[str, Any]:
    """Score round candidate `c`'s student before (round k-1's, round 0: `original`) on the train split: io.out
    gets {id, gold, prediction, logprobs, margin} per item, io.report its error rate and margins."""
    with untraced():  # validation: dvc.yaml runs only the rounds params ask for
        check_round(p, c)
    student = c.previous
    records = read_records(io.train, p.task.choices)
    if not records:
        raise MedaugError(f"{io.train}: no train records to probe")
    lm, tokenizer = load_candidate(p, student.model, io.adapter)
    rows = Scorer(lm, tokenizer, p.task, p.evaluate.batch_size).predict(records)
    scored = [{"id": r.id, "gold": r.final_decision, "prediction": row["prediction"], "logprobs": row["logprobs"]}
              for r, row in zip(records, rows)]
    for row in scored:
        row["margin"] = margin(row)
    margins = sorted(row["margin"] for row in scored)
    errors = sum(row["prediction"] != row["gold"] for row in scored)
    report = {"student": student.name, "n": len(scored), "errors": errors, "error_rate": errors / len(scored),
              "margin": {"min": margins[0], "median": statistics.median(margins), "max": margins[-1]},
              "predicted": {c: sum(row["prediction"] == c for row in scored) for c in p.task.choices}}
    write_jsonl(io.out, scored)
    write_json(io.report, report)
    log.info(f"probe {student.name}: {errors} of {len(scored)} train items wrong ({report['error_rate']:.3f})")
    return report
