"""Filter steps that ask the teacher (KAILIN-style self-evaluation).

`judge`: the teacher rates each item on a rubric (prompts/judge.txt: answerable from the context, label supported
by the context, medically sound, well formed, and an overall 1-5 score); items under `filter.judge.min_score` go.
`consistency`: the teacher answers the question from its context without seeing the label (prompts/consistency.txt);
items where it disagrees with the generated label go.
`fidelity`: for each rewrite, the teacher sees its parent's question beside it (and the abstract, never the label)
and says whether the two ask the same thing, so that the same answer is right for both (prompts/fidelity.txt); a
rewrite that changes the meaning (a negation, exposure and outcome swapped) keeps its parent's label, which is then
wrong, so it goes. The step also notes the MiniLM cosine of the two questions (`scores["fidelity_cosine"]`), which
is reported, never used to drop: a negated question sits at a cosine near the original's.
Multiple choice: prompts/<name>_options.txt show the options; the judge also checks the marked letter is the one
correct option, and consistency answers with a letter, blind to the marked one.

Scores stay on every record, kept or dropped (`scores["judge"]`, `scores["judge_rubric"]`,
`scores["consistency"]`), so the rejects file shows why an item went. An item whose reply was still unusable after
the repair is dropped with its own reason: unchecked is not checked. A request that failed (transport, HTTP) never
drops an item: the step fails once everything is asked (`raise_for_failures`: a rerun re-sends only the failed
requests), or, within `teacher.max_failed_share`, keeps the item unscored (`scores["judge_error"]`). Every request
goes through the teacher's cache, so rerunning the filter with another threshold sends nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medaug.data.schema import Record, render_options
from medaug.llm.structured import Check, JsonReply, complete_json, fill, string_schema
from medaug.llm.teacher import raise_for_failures

if TYPE_CHECKING:  # the steps package imports this module to list the steps
    from medaug.filtering.steps.base import Context

CRITERIA = ("answerable", "supported", "sound", "well_formed")
_RATINGS = [str(i) for i in range(1, 6)]
# "answer" has no enum on purpose: the local backend prefills `{"answer": "` only for a free string first key, and
# gemma-3-270m left at `{` wrote `{answer: "yes"}` for 8 of 12 items; `_answer` holds it to the task's choices.
SCHEMAS = {"judge": string_schema(*CRITERIA, "score", enums={k: _RATINGS for k in (*CRITERIA, "score")}),
           "consistency": string_schema("answer"), "fidelity": string_schema("same")}
TEMPLATES = {name: (Path(__file__).parent / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
             for name in (*SCHEMAS, "judge_options", "consistency_options")}  # fidelity compares stems: one file
PROMPT_SHAS = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in TEMPLATES.items()}
"""sha256 of each prompt file, for the data card (the request cache keys hold the filled prompts themselves)."""


def build_prompt(name: str, rec: Record, parent: Record | None = None) -> str:
    """The prompt file (its _options version for a multiple-choice item) with the item filled in
    (`structured.fill`). The consistency prompt has no {answer}: the teacher answers blind. The fidelity prompt
    (one file: it compares question stems) sets the rewrite beside its `parent`'s question, no answer shown."""
    options = f"{name}_options"
    return fill(TEMPLATES[options if rec.options and options in TEMPLATES else name],
                {"context": rec.context, "question": rec.question, "answer": rec.final_decision,
                 "options": render_options(rec.options), "parent": parent.question if parent else ""})


def _ratings(fields: dict[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in fields.items()}  # the schema's enum already holds them to "1".."5"


def _answer(choices: Sequence[str]) -> Check:
    """The reply's answer as the task spells it ("Yes." is "yes", "b" is "B"), or bad_value_answer."""
    spelled = {c.lower(): c for c in choices}

    def check(fields: dict[str, str]) -> dict[str, str] | str:
        answer = spelled.get(fields["answer"].strip(" .!()\"'").lower())
        return {"answer": answer} if answer else "bad_value_answer"
    return check


def ask(name: str, records: list[Record], ctx: Context, check: Check) -> list[JsonReply]:
    """One checked JSON reply per record. Failed requests fail the step (after every answer is cached) unless
    `teacher.max_failed_share` accepts them: a failure says nothing about the item."""
    teacher = ctx.teacher
    before = dataclasses.replace(teacher.usage, errors=Counter(teacher.usage.errors))
    parents = [ctx.parents.get(r.parent_id or "") for r in records]
    replies = complete_json(teacher, [build_prompt(name, r, q) for r, q in zip(records, parents)],
                            [SCHEMAS[name]] * len(records),
                            [check] * len(records), desc=f"filter {name} ({teacher.name})")
    step = teacher.usage - before  # this step's requests, repairs included
    raise_for_failures(f"filter {name}", step, ctx.teacher.tp.max_failed_share)
    return replies


def _note(rec: Record, **scores: Any) -> None:
    rec.scores = {**(rec.scores or {}), **scores}


def _failure(reply: JsonReply) -> str:
    """Why there is no usable reply: the teacher's failure ("teacher_error:http_500") or why the last reply was
    rejected ("bad_value_score", "not_json")."""
    return f"teacher_error:{reply.error}" if reply.reason == "teacher_error" else str(reply.reason)


def _verdicts(name: str, records: list[Record], ctx: Context, check: Check, drops: dict[str, str],
              unusable: str) -> Iterator[tuple[Record, dict[str, Any]]]:
    """Each record with the teacher's usable reply to check `name`. A record without one is noted
    (`<name>_error`) and, unless its request failed (a failure the policy accepted: the item stays, unscored),
    goes into `drops` as `unusable`. No records: the teacher is not asked."""
    if not records:
        return
    for rec, reply in zip(records, ask(name, records, ctx, check)):
        if reply.value is None:
            _note(rec, **{f"{name}_error": _failure(reply)})
            if reply.reason != "teacher_error":
                drops[rec.id] = unusable
            continue
        yield rec, reply.value


def judge(records: list[Record], ctx: Context) -> dict[str, str]:
    """Drop items the teacher scores under `filter.judge.min_score` on the rubric."""
    min_score, drops = ctx.p.filter.judge.min_score, {}
    for rec, value in _verdicts("judge", records, ctx, _ratings, drops, "judge_unscored"):
        _note(rec, judge=value["score"], judge_rubric={k: value[k] for k in CRITERIA})
        if value["score"] < min_score:
            drops[rec.id] = "judge_low_score"
    return drops


def consistency(records: list[Record], ctx: Context) -> dict[str, str]:
    """Drop items whose label the teacher, answering from the context alone, does not reproduce."""
    drops: dict[str, str] = {}
    for rec, value in _verdicts("consistency", records, ctx, _answer(ctx.p.task.choices), drops,
                                "consistency_unanswered"):
        _note(rec, consistency=value["answer"])
        if value["answer"] != rec.final_decision:
            drops[rec.id] = "inconsistent"
    return drops


def _same(fields: dict[str, str]) -> dict[str, str] | str:
    same = fields["same"].strip(" .!()\"'").lower()
    return {"same": same} if same in ("yes", "no") else "bad_value_same"


def fidelity(records: list[Record], ctx: Context) -> dict[str, str]:
    """Drop rewrites the teacher, comparing them with their parent's question, says ask something else."""
    rewrites = [r for r in records if r.source == "rewrite" and ctx.parents.get(r.parent_id or "")]
    if not rewrites:
        return {}
    from medaug.filtering.embed import embed

    parents = [ctx.parents[r.parent_id] for r in rewrites]
    cosines = (embed([r.question for r in rewrites]) * embed([q.question for q in parents])).sum(1)
    for rec, cosine in zip(rewrites, cosines):  # reported whatever the teacher says: it is not what decides
        _note(rec, fidelity_cosine=round(float(cosine), 4))
    drops: dict[str, str] = {}
    for rec, value in _verdicts("fidelity", rewrites, ctx, _same, drops, "fidelity_unscored"):
        _note(rec, fidelity=value["same"])
        if value["same"] != "yes":
            drops[rec.id] = "unfaithful_rewrite"
    return drops
