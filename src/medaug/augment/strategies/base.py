"""What every generation strategy shares: the request (`Job`), the `Strategy` it belongs to, its prompt file, the
question a reply holds, and the seeded draws strategies pick their items with.

A strategy's prompt is a file in augment/prompts/ chosen by the task: `<prompt>_options.txt` for a
multiple-choice task (with {options} and {letters}); `<prompt>.txt`, written for PubMedQA's labels (yes, no,
maybe: its worked example and what each label means), for a label task with exactly those choices; and
`<prompt>_labels.txt`, which names the task's own labels ({labels}) and shows no example, for any other label
set. A reply's answer is one of the task's choices (its schema's enum); one outside them is a reject,
`bad_label` (generate.run names it so; the teacher layer's schema check says `bad_value_answer`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from medaug.data.schema import LABELS, Record, render_options
from medaug.data.text import all_different, normalize, word_ngrams, words
from medaug.errors import MedaugError
from medaug.llm.structured import fill, string_schema
from medaug.params import Params, TaskParams

PROMPTS = Path(__file__).parent.parent / "prompts"
REASONS = ("no_question", "same_question", "copied_example")
"""Why a reply's question is none (`question`)."""
T = TypeVar("T")


def load_prompt(name: str) -> tuple[str, str]:
    """(template text, sha256 of the file text) of prompts/<name>.txt."""
    text = (PROMPTS / f"{name}.txt").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_name(prompt: str, task: TaskParams) -> str:
    """The prompt file (stem) a strategy asks `task` with (see the module docstring)."""
    if task.answer == "options":
        return f"{prompt}_options"
    return prompt if tuple(task.choices) == LABELS else f"{prompt}_labels"


def or_list(values: Sequence[str]) -> str:
    """'"a", "b" or "c"': how a prompt names the answers a reply may give."""
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def chain_keys(letters: Sequence[str], steps: int) -> list[str]:
    """A progressive reply's keys, step by step: reveal1, question1, A1.., answer1, reveal2, ..."""
    return [f"{k}{n}" for n in range(1, steps + 1) for k in ("reveal", "question", *letters, "answer")]


def build_prompt(template: str, r: Record, target: str = "", heading: str = "", letters: Sequence[str] = (),
                 steps: int = 0, labels: Sequence[str] = ()) -> str:
    """The template with the item filled in (`structured.fill`); `letters`: a multiple-choice task's; `labels`: a
    label task's choices; `steps`: a progressive chain's length."""
    return fill(template, {"context": r.context, "question": r.question, "answer": r.final_decision,
                           "target": target, "heading": heading, "options": render_options(r.options),
                           "letters": ", ".join(f'"{x}"' for x in letters), "steps": str(steps),
                           "labels": or_list(labels) if labels else "",
                           "keys": ", ".join(f'"{k}"' for k in chain_keys(letters, steps))})


@dataclass(frozen=True)
class Job:
    """One request: a strategy asking about one item (a train record, or a corpus passage as a record)."""
    strategy: str
    item: Record
    template: str
    prompt_sha: str
    target: str = ""   # the label the reply must give ("" = the teacher decides)
    heading: str = ""  # mesh: the heading the parent was picked for
    sample: int = 0    # sample index: a parent asked again gets another sample
    grounding: dict[str, Any] | None = None  # grounded: {file, chunk, [doc, title]} of the passage
    teacher: str = ""  # the teacher's model when the strategy asks several ("" = its only teacher)
    letters: tuple[str, ...] = ()  # a multiple-choice task's option letters (() = a label task)
    labels: tuple[str, ...] = ()   # a label task's choices (() = a multiple-choice task)
    steps: int = 0     # progressive: the chain's length

    @property
    def id(self) -> str:
        return f"{self.item.id}-{self.strategy}-{self.sample}" + (f"@{self.teacher}" if self.teacher else "")

    @property
    def parent_id(self) -> str | None:
        """The prepared record it derives from; a corpus passage has none (its pointer is in `teacher`)."""
        return None if self.grounding else self.item.id

    @property
    def kind(self) -> Strategy:
        from medaug.augment.strategies import get

        return get(self.strategy)

    @property
    def schema(self) -> dict[str, Any]:
        return self.kind.schema(self)

    def prompt(self) -> str:
        return build_prompt(self.template, self.item, self.target, self.heading, self.letters, self.steps,
                            self.labels)

    def check(self, fields: dict[str, str]) -> dict[str, Any] | str:
        return self.kind.check(self, fields)


class Strategy:
    """A generation strategy: its name (what params and each record's `source` call it), the prompt files it asks
    with, which tasks it serves, how it picks the items it asks about, its reply's JSON schema, and what a valid
    reply becomes (the record's fields) or why it is rejected. One module per strategy in this package, listed
    once in its __init__."""

    name: str = ""
    prompt: str = ""

    def supports(self, task: TaskParams) -> str | None:
        """None when the strategy can serve `task`; else why not and the fix, for params errors."""
        return None

    def plan(self, p: Params, train: list[Record], root: Path, ctx: Mapping[str, Any]) -> list[Job]:
        """Every request of the strategy, in order. `ctx`: what the stage hands every planner (`leak`, the test
        split's contamination check when a strategy reads the corpus; `stats`, counts to report)."""
        raise NotImplementedError

    def schema(self, job: Job) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, job: Job, fields: dict[str, str]) -> dict[str, Any] | str:
        """The record fields from a schema-valid reply, or a reject reason."""
        raise NotImplementedError

    def job(self, p: Params, item: Record, prompt: str = "", **kw: Any) -> Job:
        """A job asking about `item` with the prompt file the task takes (`prompt_name`; default: the
        strategy's `prompt`)."""
        choices = tuple(p.task.choices)
        options = p.task.answer == "options"
        return Job(self.name, item, *load_prompt(prompt_name(prompt or self.prompt, p.task)),
                   letters=choices if options else (), labels=() if options else choices, **kw)


class WritesItems(Strategy):
    """A strategy whose reply is a whole new item: a question, its answer (one of the task's labels, or with
    options one per letter and the correct letter) and an explanation."""

    def schema(self, job: Job) -> dict[str, Any]:
        if job.letters:
            return string_schema("question", *job.letters, "answer", "explanation",
                                 enums={"answer": list(job.letters)})
        return string_schema("question", "answer", "explanation", enums={"answer": list(job.labels)})

    def check(self, job: Job, fields: dict[str, str]) -> dict[str, Any] | str:
        """With `job.target` (the label the prompt asked for), a reply with another label is `off_target`; a
        question copied from the prompt's example or instructions is `copied_example`."""
        q = question(fields["question"], job.item, job.template)
        if q in REASONS:
            return q
        if job.letters:
            options = {x: fields[x].strip() for x in job.letters}
            if not all(options.values()):
                return "empty_option"
            if not all_different(options.values()):
                return "duplicate_options"
            return {"question": q, "options": options, "final_decision": fields["answer"],
                    "long_answer": fields["explanation"]}
        if job.target and fields["answer"] != job.target:
            return "off_target"
        return {"question": q, "final_decision": fields["answer"], "long_answer": fields.get("explanation", "")}


def question(text: str, parent: Record, template: str) -> str:
    """The question a reply's field holds (cut after its "?"), or the reason (one of REASONS) it is none."""
    q = text.strip('"').strip()
    if "?" not in q:
        return "no_question"  # empty, or not a question (a refusal, a statement)
    q = q[:q.index("?") + 1]  # drop what a model rambles on with
    if normalize(q) == normalize(parent.question):
        return "same_question"
    n = min(5, len(words(q)))  # a 5-word phrase from the example (or all of a short question) the item lacks
    item = word_ngrams(f"{parent.context} {parent.question}", n)
    if n >= 3 and (word_ngrams(q, n) & word_ngrams(template, n)) - item:
        return "copied_example"
    return q


# --- seeded draws ---------------------------------------------------------------------------------------------------


def pick(records: list[T], n: int, seed: int, strategy: str) -> list[T]:
    """n items (0 = all), the same ones for the same seed, in their original order; each strategy draws its own."""
    if n == 0 or n >= len(records):
        return list(records)
    rng = random.Random(f"{seed}:{strategy}")
    return [records[i] for i in sorted(rng.sample(range(len(records)), n))]


def quotas(n: int, mix: Mapping[str, float], labels: Sequence[str] = LABELS) -> dict[str, int]:
    """n split over `labels` (the task's choices) in proportion to `mix` (largest remainder, ties in `labels`
    order): exact totals, and each label within one of its share."""
    total = sum(mix.values())
    share = {k: n * mix.get(k, 0.0) / total for k in labels}
    out = {k: math.floor(v) for k, v in share.items()}
    for k in sorted(labels, key=lambda k: (-(share[k] - out[k]), list(labels).index(k)))[:n - sum(out.values())]:
        out[k] += 1
    return out


def targets(n: int, mix: Mapping[str, float], seed: int, labels: Sequence[str] = LABELS) -> list[str]:
    """n target labels in proportion to `mix`, in a seeded order (so a label is not bunched on the first parents)."""
    out = [k for k, q in quotas(n, mix, labels).items() for _ in range(q)]
    random.Random(f"{seed}:new:targets").shuffle(out)
    return out


def pick_by_label(records: list[Record], n: int, mix: Mapping[str, float], seed: int,
                  labels: Sequence[str] = LABELS) -> list[tuple[Record, int]]:
    """(parent, sample index) for n rewrites whose labels follow `mix`. A label with fewer parents than its
    quota reuses them, each pass with the next sample index (another sample, another cache entry), so a rare
    label can be asked for more often than it occurs."""
    out = []
    for label, q in quotas(n, mix, labels).items():
        pool = [i for i, r in enumerate(records) if r.final_decision == label]
        if q and not pool:
            raise MedaugError(f"params.yaml: generate.label_mix asks for {label!r} rewrites but the train split "
                              f"has no {label!r} record")
        random.Random(f"{seed}:rewrite:{label}").shuffle(pool)
        out += [(pool[j % len(pool)], j // len(pool)) for j in range(q)]
    return [(records[i], sample) for i, sample in sorted(out, key=lambda t: (t[1], t[0]))]
