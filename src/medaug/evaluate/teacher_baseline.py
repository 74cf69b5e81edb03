"""The teacher baseline (`evaluate-teacher`): the teacher answers the test questions k-shot, the papers'
"few-shot GPT-4" row, scored with the same metrics as the candidates.

The k worked examples come from the training split, label-balanced and seeded, and are the same for every test
question, so every prompt shares one prefix (which vLLM and OpenAI prompt caching reward). Each question is sent
once through the teacher's request cache (a rerun sends nothing); a reply is read leniently (`parse_answer`: the
JSON answer, else the first standalone yes/no/maybe, or option letter for a multiple-choice task), and only a reply with no answer in it goes back once for
repair (`teacher.repair_attempts`). What is still unusable is predicted "unparsed", which the metrics count wrong.
A request that failed (transport, HTTP) is never scored as a wrong answer: the stage fails once everything is
asked, or, within `teacher.max_failed_share`, scores the questions that were answered (`n`, and `teacher_failed`
in the metrics).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medaug.data.schema import LABELS, Record, read_records, render_history, render_options
from medaug.errors import MedaugError
from medaug.evaluate.results import write_results
from medaug.llm.structured import complete_json, parse_json, string_schema
from medaug.llm.teacher import Teacher, make_teacher, raise_for_failures
from medaug.params import Params, untraced
from medaug.paths import TeacherIO
from medaug.tracking import log_stage

TEMPLATES = {kind: (Path(__file__).parent / "prompts" / name).read_text(encoding="utf-8")
             for kind, name in (("labels", "fewshot.txt"), ("options", "fewshot_options.txt"))}
"""The instructions by the task's answer kind: PubMedQA's yes/no/maybe, or the letter of an exam option."""
SCHEMA = string_schema("answer")  # no enum, as in filtering.llm_checks: parse_answer holds it to the task's answers
UNPARSED = "unparsed"
_FIELD = re.compile(r"\{(shots|context|question|options|case)\}")


def _search(choices: Sequence[str], text: str) -> re.Match[str] | None:
    """The first standalone answer: any case for words (yes/no/maybe); for option letters, capitals only and
    first one that ends a phrase ("D.", "(B)", "is C"), since "A" may be the article of a sentence."""
    alternatives = "|".join(map(re.escape, choices))
    if not all(len(c) == 1 for c in choices):
        return re.search(rf"(?<![\w'-])({alternatives})(?![\w'-])", text, re.IGNORECASE)
    return (re.search(rf"(?<![\w'-])({alternatives})(?=[.):,]|\s*$)", text)
            or re.search(rf"(?<![\w'-])({alternatives})(?![\w'-])", text))


def pick_shots(train: list[Record], k: int, seed: int, labels: Sequence[str] = LABELS) -> list[Record]:
    """k training records, round-robin over the answers `labels` (balanced as far as the labels allow), each label's
    records in a seeded order; the k are then shuffled (seeded) so the last shot's label is no constant cue.
    The same train set, k and seed give the same shots whatever the input order."""
    rng = random.Random(seed)
    pools = {label: sorted((r for r in train if r.final_decision == label), key=lambda r: r.id) for label in labels}
    for pool in pools.values():
        rng.shuffle(pool)
    shots: list[Record] = []
    while len(shots) < k and any(pools.values()):
        for label in labels:
            if pools[label] and len(shots) < k:
                shots.append(pools[label].pop())
    rng.shuffle(shots)
    return shots


def _case(rec: Record) -> str:
    """What an exam item shows before its stem: its case, if any, and a progressive question's earlier steps."""
    return (f"Case: {rec.context}\n" if rec.context else "") + render_history(rec.history)


def _item(rec: Record) -> str:
    if rec.options is not None:
        return f"{_case(rec)}Question: {rec.question}\n{render_options(rec.options)}\nReply:"
    return f"Abstract: {rec.context}\nQuestion: {rec.question}\nReply:"


def build_prompt(shots: list[Record], rec: Record, answer: str = "labels") -> str:
    """The prompt file with the shots ("### Example" blocks) and the task filled in, in one pass (a `{question}`
    inside an abstract stays literal). rstrip: a base model continues after the final "Reply:"."""
    examples = "".join(f"### Example\n{_item(s)} {json.dumps({'answer': s.final_decision})}\n\n" for s in shots)
    values = {"shots": examples, "context": rec.context, "question": rec.question,
              "options": render_options(rec.options), "case": _case(rec)}
    return _FIELD.sub(lambda m: values[m.group(1)], TEMPLATES[answer]).rstrip()


def _read(text: str, choices: Sequence[str]) -> str:
    """The answer in a reply, or why there is none: the JSON object's "answer" decides when there is one
    ("bad_value_answer" if it holds none of `choices`); otherwise the first standalone one ("no_label")."""
    canonical = {c.lower(): c for c in choices}
    obj = parse_json(text)
    if isinstance(obj, dict) and "answer" in obj:
        m = _search(choices, obj["answer"]) if isinstance(obj["answer"], str) else None
        return canonical[m.group(1).lower()] if m else "bad_value_answer"
    m = _search(choices, text)
    return canonical[m.group(1).lower()] if m else "no_label"


def parse_answer(text: str | None, choices: Sequence[str] = LABELS) -> str | None:
    """One of `choices` from a reply (`{"answer": "Yes"}`, fenced JSON, "Answer: Yes.", "**No**, because ...",
    "B. It feeds at dusk"), or None. Whole words only: "yesterday" or "no-one" are not answers."""
    if text is None:
        return None
    label = _read(text, choices)
    return label if label in choices else None


def ask(p: Params, root: Path, shots: list[Record], records: list[Record]
        ) -> tuple[list[str | None], list[dict[str, Any]], Teacher]:
    """The prediction for each record, its row {reply[, reason]} and the teacher (for its usage). A reply with no
    label even after the repair is predicted "unparsed" with its reason; a failed request is None (not scored),
    and fails the stage unless `teacher.max_failed_share` accepts it."""
    tp = p.baseline_teacher()
    teacher = make_teacher(tp, Path(root))
    choices = p.task.choices

    def lenient(text: str) -> dict[str, str] | str:  # any reply that holds an answer, else the reason
        label = _read(text, choices)
        return {"answer": label} if label in choices else label

    replies = complete_json(teacher, [build_prompt(shots, r, p.task.answer) for r in records], [SCHEMA] * len(records),
                            [dict] * len(records), desc=f"evaluate-teacher ({teacher.name})", parse=lenient)
    raise_for_failures("evaluate-teacher", teacher.usage, tp.max_failed_share)
    preds = [r.value["answer"] if r.value else None if r.reason == "teacher_error" else UNPARSED for r in replies]
    rows = [{"reply": r.replies[-1] if r.replies else None,
             **({} if r.value else {"reason": f"teacher_error:{r.error}" if r.reason == "teacher_error" else r.reason})}
            for r in replies]
    return preds, rows, teacher


def run(p: Params, root: Path, io: TeacherIO, mlflow_root: Path | None = None) -> dict[str, Any]:
    """Ask the teacher (its cache under `root`) every question of `io.test`, k-shot from `io.train`; write
    io.out/predictions.jsonl and predictions.json (the official {pmid: label}), the confusion and per-class plot
    rows and the report; log to MLflow under `mlflow_root` when given. Returns the metrics."""
    train, test = read_records(io.train, p.task.choices), read_records(io.test, p.task.choices)
    if not test:
        raise MedaugError(f"{io.test}: no test records")
    k = p.evaluate.teacher_shots
    if k > len(train):
        raise MedaugError(f"evaluate.teacher_shots = {k} but {io.train} holds {len(train)} records")
    shots = pick_shots(train, k, p.evaluate.seed, p.task.choices)
    preds, rows, teacher = ask(p, root, shots, test)
    answered = [i for i, pred in enumerate(preds) if pred is not None]  # a failed request is no wrong answer
    reasons = Counter(rows[i]["reason"] for i in answered if "reason" in rows[i])
    extra = {"model": teacher.tp.model, "variant": f"teacher-{k}-shot", "shots": [s.id for s in shots],
             "unparsed": sum(reasons.values()), "unparsed_reasons": dict(sorted(reasons.items())),
             **({"teacher_failed": len(test) - len(answered)} if len(answered) < len(test) else {}),
             "usage": teacher.usage.as_dict()}
    metrics = write_results(p, [test[i] for i in answered], [preds[i] for i in answered], io, extra,
                            [rows[i] for i in answered])
    if mlflow_root is not None:
        with untraced():  # MLflow's copy of the params: no output of the stage
            logged = {"teacher": asdict(teacher.tp), "evaluate": asdict(p.evaluate)}
        log_stage(Path(mlflow_root), "evaluate-teacher", logged, metrics)
    return metrics

