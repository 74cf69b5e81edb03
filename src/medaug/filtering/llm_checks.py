"""Filter steps that ask the teacher (KAILIN-style self-evaluation).

`judge`: the teacher rates each item on a rubric (prompts/judge.txt: answerable from the context, label supported
by the context, medically sound, well formed, and an overall 1-5 score); items under `filter.judge.min_score` go.
`consistency`: the teacher answers the question from its context without seeing the label (prompts/consistency.txt);
items where it disagrees with the generated label go.

Scores stay on every record, kept or dropped (`scores["judge"]`, `scores["judge_rubric"]`,
`scores["consistency"]`), so the rejects file shows why an item went. An item the teacher could not rate (the
request failed, or the reply was still unusable after the repair) is dropped with its own reason: unchecked is not
checked. Every request goes through the teacher's cache, so rerunning the filter with another threshold sends
nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medaug.data.schema import LABELS, Record
from medaug.errors import MedaugError
from medaug.llm.structured import Check, JsonReply, complete_json, string_schema

if TYPE_CHECKING:  # steps.py imports this module to register the steps
    from medaug.filtering.steps import Context

CRITERIA = ("answerable", "supported", "sound", "well_formed")
_RATINGS = [str(i) for i in range(1, 6)]
# "answer" has no enum on purpose: the local backend prefills `{"answer": "` only for a free string first key, and
# gemma-3-270m left at `{` wrote `{answer: "yes"}` for 8 of 12 items; `_label` holds the answer to yes/no/maybe.
SCHEMAS = {"judge": string_schema(*CRITERIA, "score", enums={k: _RATINGS for k in (*CRITERIA, "score")}),
           "consistency": string_schema("answer")}
TEMPLATES = {name: (Path(__file__).parent / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
             for name in SCHEMAS}
PROMPT_SHAS = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in TEMPLATES.items()}
"""sha256 of each prompt file, for the data card (the request cache keys hold the filled prompts themselves)."""


def build_prompt(name: str, rec: Record) -> str:
    """The prompt file with the item filled in (str.replace: the JSON examples keep their braces). The
    consistency prompt has no {answer}: the teacher answers blind. rstrip: a base model continues after "Reply:"."""
    text = TEMPLATES[name]
    for key, value in (("context", rec.context), ("question", rec.question), ("answer", rec.final_decision)):
        text = text.replace("{" + key + "}", value)
    return text.rstrip()


def _ratings(fields: dict[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in fields.items()}  # the schema's enum already holds them to "1".."5"


def _label(fields: dict[str, str]) -> dict[str, str] | str:
    answer = fields["answer"].strip(" .!\"'").lower()
    return {"answer": answer} if answer in LABELS else "bad_value_answer"


def ask(name: str, records: list[Record], ctx: Context, check: Check) -> list[JsonReply]:
    """One checked JSON reply per record. All requests failing is a broken endpoint, not bad items: stop with
    the cause rather than drop everything."""
    teacher = ctx.teacher
    replies = complete_json(teacher, [build_prompt(name, r) for r in records], [SCHEMAS[name]] * len(records),
                            [check] * len(records), desc=f"filter {name} ({teacher.name})")
    errors = Counter(r.error for r in replies if r.reason == "teacher_error")
    if sum(errors.values()) == len(records):
        raise MedaugError(f"filter {name}: all {len(records)} teacher requests failed "
                          f"({', '.join(f'{k}: {v}' for k, v in errors.most_common())}); check teacher.model in "
                          f"params.yaml and OPENAI_BASE_URL / OPENAI_API_KEY")
    return replies


def _note(rec: Record, **scores: Any) -> None:
    rec.scores = {**(rec.scores or {}), **scores}


def _failure(reply: JsonReply) -> str:
    """Why there is no usable reply: the teacher's failure ("teacher_error:http_500") or why the last reply was
    rejected ("bad_value_score", "not_json")."""
    return f"teacher_error:{reply.error}" if reply.reason == "teacher_error" else str(reply.reason)


def judge(records: list[Record], ctx: Context) -> dict[str, str]:
    """Drop items the teacher scores under `filter.judge.min_score` on the rubric."""
    if not records:
        return {}
    min_score = ctx.p.filter.judge.min_score
    drops = {}
    for rec, reply in zip(records, ask("judge", records, ctx, _ratings)):
        if reply.value is None:
            _note(rec, judge_error=_failure(reply))
            drops[rec.id] = "judge_unscored"
            continue
        _note(rec, judge=reply.value["score"], judge_rubric={k: reply.value[k] for k in CRITERIA})
        if reply.value["score"] < min_score:
            drops[rec.id] = "judge_low_score"
    return drops


def consistency(records: list[Record], ctx: Context) -> dict[str, str]:
    """Drop items whose label the teacher, answering from the context alone, does not reproduce."""
    if not records:
        return {}
    drops = {}
    for rec, reply in zip(records, ask("consistency", records, ctx, _label)):
        if reply.value is None:
            _note(rec, consistency_error=_failure(reply))
            drops[rec.id] = "consistency_unanswered"
            continue
        _note(rec, consistency=reply.value["answer"])
        if reply.value["answer"] != rec.final_decision:
            drops[rec.id] = "inconsistent"
    return drops
