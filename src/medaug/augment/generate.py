"""Generation strategies (Dr.LLaMA style): the teacher rewrites existing questions and writes new ones.

A strategy is a prompt file (prompts/<strategy>.txt, with {context}, {question}, {answer}), the JSON schema of
its reply, and a check of the reply's fields. The teacher layer (medaug.llm) asks for JSON, repairs a bad reply
once and accounts for every request; this module only says what to ask and what to keep.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import LABELS, Record, read_records, write_records
from medaug.data.text import normalize, word_ngrams, words
from medaug.errors import MedaugError
from medaug.llm.structured import complete_json, string_schema
from medaug.llm.teacher import Request, make_teacher
from medaug.params import Params

PROMPTS = Path(__file__).parent / "prompts"
SCHEMAS = {"rewrite": string_schema("question"),
           "new": string_schema("question", "answer", "explanation", enums={"answer": list(LABELS)})}


def load_prompt(strategy: str) -> tuple[str, str]:
    """(template text, sha256 of the file text)."""
    text = (PROMPTS / f"{strategy}.txt").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_prompt(template: str, r: Record) -> str:
    """The template with the item filled in; braces elsewhere (the JSON example) stay as they are. rstrip: the
    prompt ends right after "Reply:", where a base model continues."""
    for name, value in (("context", r.context), ("question", r.question), ("answer", r.final_decision)):
        template = template.replace("{" + name + "}", value)
    return template.rstrip()


def check(strategy: str, fields: dict[str, str], parent: Record, template: str = "") -> dict[str, str] | str:
    """The record fields from a schema-valid reply, or a reject reason. `template` (the prompt file) lets us
    catch a question copied from the worked example or the instructions rather than written about the item."""
    question = fields["question"].strip('"').strip()
    if "?" not in question:
        return "no_question"  # empty, or not a question (a refusal, a statement)
    question = question[:question.index("?") + 1]  # drop what a model rambles on with
    if normalize(question) == normalize(parent.question):
        return "same_question"
    n = min(5, len(words(question)))  # a 5-word phrase from the example (or all of a short question) the item lacks
    item = word_ngrams(f"{parent.context} {parent.question}", n)
    if n >= 3 and (word_ngrams(question, n) & word_ngrams(template, n)) - item:
        return "copied_example"
    if strategy == "rewrite":
        return {"question": question, "final_decision": parent.final_decision, "long_answer": parent.long_answer}
    return {"question": question, "final_decision": fields["answer"], "long_answer": fields.get("explanation", "")}


def pick(records: list[Record], n: int, seed: int, strategy: str) -> list[Record]:
    """n records (0 = all), the same ones for the same seed; each strategy draws its own."""
    if n == 0 or n >= len(records):
        return list(records)
    rng = random.Random(f"{seed}:{strategy}")
    return [records[i] for i in sorted(rng.sample(range(len(records)), n))]


def plan(p: Params, train: list[Record]) -> list[tuple[str, Record, str, str]]:
    """(strategy, parent, template, prompt_sha) for every request the stage makes, strategies in params order."""
    jobs = []
    for strategy in p.generate.strategies:
        template, prompt_sha = load_prompt(strategy)
        jobs += [(strategy, parent, template, prompt_sha)
                 for parent in pick(train, p.generate.per_strategy, p.generate.seed, strategy)]
    return jobs


def dry_run(p: Params, root: Path, prepared_dir: Path) -> dict[str, Any]:
    """What `run` would ask the teacher, and at most what it would cost, without asking anything."""
    jobs = plan(p, read_records(Path(prepared_dir) / "train.jsonl"))
    teacher = make_teacher(p.teacher, Path(root))
    est = teacher.estimate([Request.user(build_prompt(t, parent), 0, SCHEMAS[s]) for s, parent, t, _ in jobs])
    repairs = est["to_send"] * p.teacher.repair_attempts
    print(f"generate --dry-run: {est['requests']} requests ({est['cached']} cached, {est['to_send']} to send) "
          f"to {p.teacher.backend}:{p.teacher.model}\n"
          f"  tokens: ~{est['input_tokens_est']:,} prompt (4 chars/token) + at most {est['output_tokens_max']:,} reply\n"
          f"  cost: at most ${est['cost_usd_max']:.4f} (prices: teacher.prices; budget: "
          f"{'$%g' % p.teacher.budget_usd if p.teacher.budget_usd else 'none'}), plus up to {repairs} repair "
          f"requests for replies that fail validation")
    return est


def run(p: Params, root: Path, prepared_dir: Path, out_path: Path, rejects_path: Path,
        metrics_path: Path) -> dict[str, Any]:
    jobs = plan(p, read_records(Path(prepared_dir) / "train.jsonl"))
    teacher = make_teacher(p.teacher, Path(root))
    sample_index = 0
    replies = complete_json(teacher, [build_prompt(t, parent) for _, parent, t, _ in jobs],
                            [SCHEMAS[s] for s, *_ in jobs],
                            [lambda f, s=s, parent=parent, t=t: check(s, f, parent, t) for s, parent, t, _ in jobs],
                            sample_index, desc=f"generate ({teacher.name})")
    generated: list[Record] = []
    rejects: list[dict[str, Any]] = []
    by_strategy: dict[str, dict[str, Any]] = {}
    for (strategy, parent, _, prompt_sha), reply in zip(jobs, replies):
        rid = f"{parent.id}-{strategy}-{sample_index}"
        counts = by_strategy.setdefault(strategy, {"requested": 0, "generated": 0, "repaired": 0, "rejects": {}})
        counts["requested"] += 1
        if reply.value is None:
            counts["rejects"][reply.reason] = counts["rejects"].get(reply.reason, 0) + 1
            rejects.append({"id": rid, "parent_id": parent.id, "strategy": strategy, "reason": reply.reason,
                            "teacher_error": reply.error, "replies": reply.replies, "request_sha": reply.request_sha})
            continue
        counts["generated"] += 1
        counts["repaired"] += reply.repaired
        generated.append(Record(id=rid, contexts=list(parent.contexts), meshes=list(parent.meshes),
                                labels=parent.labels, source=strategy, parent_id=parent.id,
                                teacher={"model": teacher.name, "prompt_sha": prompt_sha,
                                         "request_sha": reply.request_sha}, **reply.value))
    reasons: dict[str, int] = {}
    for r in rejects:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    metrics = {"requested": len(jobs), "generated": len(generated), "repaired": sum(r.repaired for r in replies),
               "rejects": dict(sorted(reasons.items())), "teacher": teacher.usage.as_dict(),
               "by_strategy": by_strategy}
    assert metrics["requested"] == metrics["generated"] + len(rejects)
    if jobs and reasons.get("teacher_error") == len(jobs):
        errors = teacher.usage.errors.most_common()
        raise MedaugError(f"generate: all {len(jobs)} teacher requests failed "
                          f"({', '.join(f'{k}: {v}' for k, v in errors)}); check teacher.model in params.yaml "
                          f"and OPENAI_BASE_URL / OPENAI_API_KEY")
    write_records(out_path, generated)
    write_jsonl(rejects_path, rejects)
    write_json(metrics_path, metrics)
    u = teacher.usage
    print(f"generate: {len(generated)} records from {len(jobs)} items ({len(rejects)} rejected: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(reasons.items())) or 'none'}); teacher: {u.requests} requests, "
          f"{u.cache_hits} cached, {u.failed} failed, {u.input_tokens:,}+{u.output_tokens:,} tokens, "
          f"${u.cost_usd:.4f}", file=sys.stderr)
    return metrics
