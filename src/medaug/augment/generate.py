"""Generation strategies: the teacher rewrites existing questions and writes new ones (Dr.LLaMA), writes questions
grounded in passages of a user corpus (MQG), and writes new ones on parents sampled so MeSH headings are covered
evenly (KAILIN), and turn a case into a chain of progressive exam questions (MQG/ECN-QA). Strategies mix in one
run; each record's `source` names the one that made it.

A strategy is a prompt file (prompts/<name>.txt, with {context}, {question}, {answer}, {target}, {heading}; for a
multiple-choice task prompts/<name>_options.txt, with {options} and {letters} too), the JSON schema of its reply,
a check of the reply's fields, and how it picks the items it asks about.

Multiple choice (`task.answer: options`): `rewrite` asks for the stem in other words and reorders the parent's
options itself (seeded, never the order they had; the answer letter follows its text), so the teacher cannot lose
the answer; `new` writes a standalone exam question on the parent's topic and `grounded` one on a passage, each
with one option per letter, the correct letter and an explanation. A reply whose options are empty or not all
different is rejected (`empty_option`, `duplicate_options`) and goes back for repair. `mesh` is for label tasks.
`progressive` (a task with {history}) asks once per case for `generate.progressive.steps` steps, each a reveal,
a question and its options (flat keys reveal1, question1, A1.., answer1, reveal2, ...); a reply with one bad step
is rejected whole, and a good one becomes one record per step, with the chain, the case so far as its contexts and
the earlier steps with their answers as its history.
The teacher layer (medaug.llm) asks for JSON, repairs a bad reply once and accounts for every request; this module
only says what to ask and what to keep.
"""

from __future__ import annotations

import logging

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from medaug.augment import grounded, mesh
from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.leakage import Contamination
from medaug.data.mesh import load_descriptors
from medaug.data.schema import LABELS, Record, read_records, render_options, shuffle_options, write_records
from medaug.data.text import all_different, normalize, word_ngrams, words
from medaug.errors import MedaugError
from medaug.llm.structured import JsonReply, complete_json, fill, string_schema
from medaug.llm.limits import Meter
from medaug.llm.teacher import Request, Usage, make_teacher, raise_for_failures
from medaug.params import Params

PROMPTS = Path(__file__).parent / "prompts"
_NEW = string_schema("question", "answer", "explanation", enums={"answer": list(LABELS)})
SCHEMAS = {"rewrite": string_schema("question"), "new": _NEW, "grounded": _NEW, "mesh": _NEW}
T = TypeVar("T")

log = logging.getLogger(__name__)


def load_prompt(name: str) -> tuple[str, str]:
    """(template text, sha256 of the file text)."""
    text = (PROMPTS / f"{name}.txt").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_prompt(template: str, r: Record, target: str = "", heading: str = "",
                 letters: Sequence[str] = (), steps: int = 0) -> str:
    """The template with the item filled in (`structured.fill`); `letters`: a multiple-choice task's; `steps`: a
    progressive chain's length."""
    return fill(template, {"context": r.context, "question": r.question, "answer": r.final_decision,
                           "target": target, "heading": heading, "options": render_options(r.options),
                           "letters": ", ".join(f'"{x}"' for x in letters), "steps": str(steps),
                           "keys": ", ".join(f'"{k}"' for k in chain_keys(letters, steps))})


def chain_keys(letters: Sequence[str], steps: int) -> list[str]:
    """A progressive reply's keys, step by step: reveal1, question1, A1.., answer1, reveal2, ..."""
    return [f"{k}{n}" for n in range(1, steps + 1) for k in ("reveal", "question", *letters, "answer")]


def schema(strategy: str, letters: Sequence[str] = (), steps: int = 0) -> dict[str, Any]:
    """The JSON schema of a strategy's reply; with `letters` (a multiple-choice task), one key per option;
    `progressive`, those of each of its `steps`."""
    if strategy == "progressive":
        return string_schema(*chain_keys(letters, steps), enums={f"answer{n}": list(letters)
                                                                 for n in range(1, steps + 1)})
    if not letters or strategy == "rewrite":
        return SCHEMAS[strategy]
    return string_schema("question", *letters, "answer", "explanation", enums={"answer": list(letters)})


def check(strategy: str, fields: dict[str, str], parent: Record, template: str = "",
          target: str = "", letters: Sequence[str] = (), key: str = "", steps: int = 0) -> dict[str, Any] | str:
    """The record fields from a schema-valid reply, or a reject reason. `template` (the prompt file) lets us
    catch a question copied from the worked example or the instructions rather than written about the item;
    `target` is the label the prompt asked for (`off_target` when the reply gives another). With `letters` (a
    multiple-choice task) the fields hold the options; a rewrite reorders its parent's, seeded by `key`.
    `progressive`: {"chain": [the fields of each step]} (see _chain_fields)."""
    if strategy == "progressive":
        return _chain_fields(fields, parent, template, letters, key, steps)
    question = _question(fields["question"], parent, template)
    if question in REASONS:
        return question
    if letters:
        return _options_fields(strategy, fields, question, parent, letters, key)
    if strategy == "rewrite":
        return {"question": question, "final_decision": parent.final_decision, "long_answer": parent.long_answer}
    if target and fields["answer"] != target:
        return "off_target"
    return {"question": question, "final_decision": fields["answer"], "long_answer": fields.get("explanation", "")}


REASONS = ("no_question", "same_question", "copied_example")


def _question(text: str, parent: Record, template: str) -> str:
    """The question a reply's field holds (cut after its "?"), or the reason (one of REASONS) it is none."""
    question = text.strip('"').strip()
    if "?" not in question:
        return "no_question"  # empty, or not a question (a refusal, a statement)
    question = question[:question.index("?") + 1]  # drop what a model rambles on with
    if normalize(question) == normalize(parent.question):
        return "same_question"
    n = min(5, len(words(question)))  # a 5-word phrase from the example (or all of a short question) the item lacks
    item = word_ngrams(f"{parent.context} {parent.question}", n)
    if n >= 3 and (word_ngrams(question, n) & word_ngrams(template, n)) - item:
        return "copied_example"
    return question


def _chain_fields(fields: dict[str, str], parent: Record, template: str, letters: Sequence[str], key: str,
                  steps: int) -> dict[str, Any] | str:
    """A progressive reply -> {"chain": [record fields of steps 1..steps]}, each with the case so far (its
    `contexts`), the chain {id: key, step, steps} and the earlier steps with their answers (`history`); or the
    reason of its first bad step (`empty_reveal`, the question's, `empty_option`, `duplicate_options`), or
    `repeated_question` when two steps ask the same."""
    chain: list[dict[str, Any]] = []
    reveals: list[str] = []
    history: list[dict[str, str]] = []
    for n in range(1, steps + 1):
        reveals.append(fields[f"reveal{n}"].strip())
        if not reveals[-1]:
            return "empty_reveal"
        question = _question(fields[f"question{n}"], parent, template)
        if question in REASONS:
            return question
        options = {x: fields[f"{x}{n}"].strip() for x in letters}
        if not all(options.values()):
            return "empty_option"
        if not all_different(options.values()):
            return "duplicate_options"
        answer = fields[f"answer{n}"]
        chain.append({"question": question, "options": options, "final_decision": answer, "contexts": list(reveals),
                      "chain": {"id": key, "step": n, "steps": steps}, "history": list(history)})
        history.append({"question": question, "answer": options[answer]})
    if not all_different([step["question"] for step in chain]):
        return "repeated_question"
    return {"chain": chain}


def _options_fields(strategy: str, fields: dict[str, str], question: str, parent: Record, letters: Sequence[str],
                    key: str) -> dict[str, Any] | str:
    if strategy == "rewrite":
        moved = shuffle_options(parent, key, moved=True)
        return {"question": question, "options": moved.options, "final_decision": moved.final_decision,
                "long_answer": parent.long_answer}
    options = {x: fields[x].strip() for x in letters}
    if not all(options.values()):
        return "empty_option"
    if not all_different(options.values()):
        return "duplicate_options"
    return {"question": question, "options": options, "final_decision": fields["answer"],
            "long_answer": fields["explanation"]}


# --- which items each strategy asks about ----------------------------------------------------------------------


def pick(records: list[T], n: int, seed: int, strategy: str) -> list[T]:
    """n items (0 = all), the same ones for the same seed, in their original order; each strategy draws its own."""
    if n == 0 or n >= len(records):
        return list(records)
    rng = random.Random(f"{seed}:{strategy}")
    return [records[i] for i in sorted(rng.sample(range(len(records)), n))]


def quotas(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """n split over the labels in proportion to `mix` (largest remainder, ties in LABELS order): exact totals,
    and each label within one of its share."""
    total = sum(mix.values())
    share = {k: n * mix.get(k, 0.0) / total for k in LABELS}
    out = {k: math.floor(v) for k, v in share.items()}
    for k in sorted(LABELS, key=lambda k: (-(share[k] - out[k]), LABELS.index(k)))[:n - sum(out.values())]:
        out[k] += 1
    return out


def targets(n: int, mix: Mapping[str, float], seed: int) -> list[str]:
    """n target labels in proportion to `mix`, in a seeded order (so a label is not bunched on the first parents)."""
    labels = [k for k, q in quotas(n, mix).items() for _ in range(q)]
    random.Random(f"{seed}:new:targets").shuffle(labels)
    return labels


def pick_by_label(records: list[Record], n: int, mix: Mapping[str, float],
                  seed: int) -> list[tuple[Record, int]]:
    """(parent, sample index) for n rewrites whose labels follow `mix`. A label with fewer parents than its
    quota reuses them, each pass with the next sample index (another sample, another cache entry), so a rare
    label can be asked for more often than it occurs."""
    out = []
    for label, q in quotas(n, mix).items():
        pool = [i for i, r in enumerate(records) if r.final_decision == label]
        if q and not pool:
            raise MedaugError(f"params.yaml: generate.label_mix asks for {label!r} rewrites but the train split "
                              f"has no {label!r} record")
        random.Random(f"{seed}:rewrite:{label}").shuffle(pool)
        out += [(pool[j % len(pool)], j // len(pool)) for j in range(q)]
    return [(records[i], sample) for i, sample in sorted(out, key=lambda t: (t[1], t[0]))]


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
    steps: int = 0     # progressive: the chain's length

    @property
    def id(self) -> str:
        return f"{self.item.id}-{self.strategy}-{self.sample}" + (f"@{self.teacher}" if self.teacher else "")

    @property
    def parent_id(self) -> str | None:
        """The prepared record it derives from; a corpus passage has none (its pointer is in `teacher`)."""
        return None if self.grounding else self.item.id

    @property
    def schema(self) -> dict[str, Any]:
        return schema(self.strategy, self.letters, self.steps)

    def prompt(self) -> str:
        return build_prompt(self.template, self.item, self.target, self.heading, self.letters, self.steps)

    def check(self, fields: dict[str, str]) -> dict[str, Any] | str:
        return check(self.strategy, fields, self.item, self.template, self.target, self.letters, self.id, self.steps)


Planner = Callable[[Params, list[Record], Path], list[Job]]


def _job(p: Params, strategy: str, item: Record, prompt: str, **kw: Any) -> Job:
    """A job asking with prompts/<prompt>.txt (<prompt>_options.txt for a multiple-choice task)."""
    if p.task.answer == "options":
        return Job(strategy, item, *load_prompt(f"{prompt}_options"), letters=tuple(p.task.choices), **kw)
    return Job(strategy, item, *load_prompt(prompt), **kw)


def plan_rewrite(p: Params, train: list[Record], root: Path) -> list[Job]:
    g = p.generate
    if not g.label_mix:
        return [_job(p, "rewrite", r, "rewrite") for r in pick(train, g.per_strategy, g.seed, "rewrite")]
    return [_job(p, "rewrite", r, "rewrite", sample=s)
            for r, s in pick_by_label(train, g.per_strategy or len(train), g.label_mix, g.seed)]


def plan_new(p: Params, train: list[Record], root: Path) -> list[Job]:
    g = p.generate
    parents = pick(train, g.per_strategy, g.seed, "new")
    if not g.label_mix:
        return [_job(p, "new", r, "new") for r in parents]
    return [_job(p, "new", r, "new_target", target=t)
            for r, t in zip(parents, targets(len(parents), g.label_mix, g.seed))]


def passages(p: Params, root: Path, strategy: str, leak: Contamination | None = None,
             stats: dict[str, Any] | None = None) -> list[grounded.Passage]:
    """The passages of `generate.grounded.corpus`; those that leak the test split (`leak`; run and dry_run pass
    the prepared split's) are dropped before any is picked, and counted in stats["<strategy>_dropped_test_overlap"]."""
    g = p.generate
    folder, size, overlap = root / g.grounded.corpus, g.grounded.chunk_tokens, g.grounded.overlap_tokens
    if leak is None:
        return grounded.read_corpus(folder, size, overlap)
    clean, dropped = grounded.read_clean_corpus(folder, size, overlap, leak)
    if stats is not None:
        stats[f"{strategy}_dropped_test_overlap"] = dropped
    return clean


def plan_grounded(p: Params, train: list[Record], root: Path, leak: Contamination | None = None,
                  stats: dict[str, Any] | None = None) -> list[Job]:
    g = p.generate
    return [_job(p, "grounded", s.as_item(), "grounded", grounding=s.pointer)
            for s in pick(passages(p, root, "grounded", leak, stats), g.per_strategy, g.seed, "grounded")]


def plan_mesh(p: Params, train: list[Record], root: Path) -> list[Job]:
    g = p.generate
    descriptors = load_descriptors(root / g.mesh.descriptors) if g.mesh.descriptors else None
    return [_job(p, "mesh", r, "mesh", heading=h) for r, h in mesh.balanced_pick(train, g.per_strategy, g.seed,
                                                                                descriptors)]


def plan_progressive(p: Params, train: list[Record], root: Path, leak: Contamination | None = None,
                     stats: dict[str, Any] | None = None) -> list[Job]:
    """Cases to turn into chains (`generate.progressive.cases`): `train`, a train item's context (its stem when it
    has none), of a train chain its last step only (the whole case); `corpus`, the passages of
    `generate.grounded.corpus` (MQG's textbook route; see `passages` for `leak` and `stats`)."""
    g = p.generate
    if g.progressive.cases == "corpus":
        return [_job(p, "progressive", s.as_item(), "progressive", grounding=s.pointer, steps=g.progressive.steps)
                for s in pick(passages(p, root, "progressive", leak, stats), g.per_strategy, g.seed, "progressive")]
    cases = [replace(r, contexts=[r.context or r.question]) for r in train
             if not r.chain or r.chain["step"] == r.chain["steps"]]
    return [_job(p, "progressive", r, "progressive", steps=g.progressive.steps)
            for r in pick(cases, g.per_strategy, g.seed, "progressive")]


PLANNERS: dict[str, Planner] = {"rewrite": plan_rewrite, "new": plan_new, "grounded": plan_grounded,
                                "mesh": plan_mesh, "progressive": plan_progressive}


def plan(p: Params, train: list[Record], root: Path = Path("."), leak: Contamination | None = None,
         stats: dict[str, Any] | None = None) -> list[Job]:
    """Every request the stage makes, strategies in params order; see `passages` for `leak` and `stats`. A
    strategy with several teachers (`generate.teachers`) asks each of them about the same items, teacher by
    teacher, and its job ids end in @<model>."""
    planners = PLANNERS | {name: partial(PLANNERS[name], leak=leak, stats=stats) for name in ("grounded",
                                                                                              "progressive")}
    jobs = []
    for strategy in p.generate.strategies:
        planned = planners[strategy](p, train, Path(root))
        models = [tp.model for tp in p.teachers_for(strategy)]
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
              f"prices: teacher.prices; budget for the stage: "
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


def run(p: Params, root: Path, prepared_dir: Path, out_path: Path, rejects_path: Path,
        metrics_path: Path) -> dict[str, Any]:
    jobs, replies, names, usage, stats = [], [], [], {}, {}
    meter = Meter(p.teacher.budget_usd)  # one budget for the stage, whichever teachers it asks
    for tp, group in by_teacher(p, plan_split(p, root, prepared_dir, stats)):
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
    raise_for_failures("generate", u, p.teacher.max_failed_share)
    write_records(out_path, generated)
    write_jsonl(rejects_path, rejects)
    write_json(metrics_path, metrics)
    log.info(f"generate: {len(generated)} records from {len(jobs)} items ({len(rejects)} rejected: "
             f"{', '.join(f'{k} {v}' for k, v in sorted(reasons.items())) or 'none'}); teacher: {u.requests} requests, "
             f"{u.cache_hits} cached, {u.failed} failed, {u.input_tokens:,}+{u.output_tokens:,} tokens, "
             f"${u.cost_usd:.4f}")
    return metrics
