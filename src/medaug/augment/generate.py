"""Generation strategies (Dr.LLaMA style): the teacher rewrites existing questions and writes new ones.

A strategy is a prompt file (prompts/<strategy>.txt, with {context}, {question}, {answer}) plus a parser for
the line-based reply. The prompt works for a base model (it ends where the model continues, after
"Question:") and for a chat model (it states the reply format), so the parser accepts both shapes.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import LABELS, Record, read_records, write_records
from medaug.data.text import normalize, word_ngrams, words
from medaug.errors import MedaugError
from medaug.llm.teacher import Completion, make_teacher
from medaug.params import Params

PROMPTS = Path(__file__).parent / "prompts"
_FIELD = re.compile(r"^\s*(question|answer|explanation)\s*:\s*(.*)$", re.IGNORECASE)


def load_prompt(strategy: str) -> tuple[str, str]:
    """(template text, sha256 of the file text)."""
    text = (PROMPTS / f"{strategy}.txt").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_prompt(template: str, r: Record) -> str:
    # rstrip: the prompt ends right after "Question:", where a base model continues
    return template.rstrip().format(context=r.context, question=r.question, answer=r.final_decision)


def parse_fields(reply: str) -> dict[str, str]:
    """The reply's "Key: value" lines, read in order up to the first key that repeats (a second item).
    A first line without a key is the question (a base model continuing after "Question:") if it asks something
    or if no line says "Question:"; otherwise it is a chat model's preamble."""
    lines = [line.strip() for line in reply.replace("**", "").splitlines() if line.strip()]
    keys = [m.group(1).lower() if (m := _FIELD.match(line)) else None for line in lines]
    if lines and keys[0] is None and ("?" in lines[0] or "question" not in keys):
        lines[0], keys[0] = f"Question: {lines[0]}", "question"
    fields: dict[str, str] = {}
    for line, key in zip(lines, keys):
        if key in fields:
            break
        if key:
            fields[key] = _FIELD.match(line).group(2).strip()
    return fields


def parse(strategy: str, reply: str, parent: Record, template: str = "") -> dict[str, str] | str:
    """The generated fields, or a reject reason. `template` (the prompt file) lets us catch a question copied
    from the worked example or the instructions rather than written about the item."""
    f = parse_fields(reply)
    question = f.get("question", "").strip().strip('"').strip()
    if "?" not in question:
        return "no_question"  # empty, or not a question (a refusal, a statement)
    question = question[:question.index("?") + 1]  # drop what a base model rambles on with
    if normalize(question) == normalize(parent.question):
        return "same_question"
    n = min(5, len(words(question)))  # a 5-word phrase from the example (or all of a short question) the item lacks
    item = word_ngrams(f"{parent.context} {parent.question}", n)
    if n >= 3 and (word_ngrams(question, n) & word_ngrams(template, n)) - item:
        return "copied_example"
    if strategy == "rewrite":
        return {"question": question, "final_decision": parent.final_decision, "long_answer": parent.long_answer}
    answer = re.findall(r"[a-z]+", f.get("answer", "").lower())
    if not answer or answer[0] not in LABELS or set(answer[1:]) & set(LABELS):  # "yes", "Maybe, partly"; not "yes or no"
        return "unknown_label"
    return {"question": question, "final_decision": answer[0], "long_answer": f.get("explanation", "")}


def pick(records: list[Record], n: int, seed: int, strategy: str) -> list[Record]:
    """n records (0 = all), the same ones for the same seed; each strategy draws its own."""
    if n == 0 or n >= len(records):
        return list(records)
    rng = random.Random(f"{seed}:{strategy}")
    return [records[i] for i in sorted(rng.sample(range(len(records)), n))]


def run(p: Params, root: Path, prepared_dir: Path, out_path: Path, rejects_path: Path,
        metrics_path: Path) -> dict[str, Any]:
    train = read_records(Path(prepared_dir) / "train.jsonl")
    teacher = make_teacher(p.teacher, Path(root))
    sample_index = 0
    generated: list[Record] = []
    rejects: list[dict[str, Any]] = []
    all_completions: list[Completion] = []
    by_strategy = {}
    for strategy in p.generate.strategies:
        template, prompt_sha = load_prompt(strategy)
        parents = pick(train, p.generate.per_strategy, p.generate.seed, strategy)
        completions = teacher.complete([build_prompt(template, r) for r in parents], sample_index=sample_index)
        all_completions += completions
        n_gen, reasons = 0, Counter()
        for parent, c in zip(parents, completions):
            if c.text is None:
                continue
            rid = f"{parent.id}-{strategy}-{sample_index}"
            result = parse(strategy, c.text, parent, template)
            if isinstance(result, str):
                rejects.append({"id": rid, "parent_id": parent.id, "strategy": strategy, "reason": result,
                                "reply": c.text, "request_sha": c.request_sha})
                reasons[result] += 1
                continue
            generated.append(Record(id=rid, contexts=list(parent.contexts), meshes=list(parent.meshes),
                                    labels=parent.labels, source=strategy, parent_id=parent.id,
                                    teacher={"model": teacher.name, "prompt_sha": prompt_sha,
                                             "request_sha": c.request_sha}, **result))
            n_gen += 1
        by_strategy[strategy] = {"requests": len(completions), "cache_hits": sum(c.cached for c in completions),
                                 "teacher_errors": sum(c.text is None for c in completions),
                                 "parse_rejects": sum(reasons.values()), "generated": n_gen,
                                 "reject_reasons": dict(sorted(reasons.items()))}

    cs = all_completions
    metrics = {"requests": len(cs), "cache_hits": sum(c.cached for c in cs),
               "cache_misses": sum(not c.cached for c in cs), "teacher_errors": sum(c.text is None for c in cs),
               "parse_rejects": len(rejects), "generated": len(generated), "by_strategy": by_strategy,
               "input_tokens": sum(c.input_tokens for c in cs), "output_tokens": sum(c.output_tokens for c in cs)}
    if cs and metrics["teacher_errors"] == len(cs):
        reasons = Counter(c.error for c in cs).most_common()
        raise MedaugError(f"generate: all {len(cs)} teacher requests failed "
                          f"({', '.join(f'{k}: {v}' for k, v in reasons)}); check teacher.model in params.yaml "
                          f"and OPENAI_BASE_URL / OPENAI_API_KEY")
    write_records(out_path, generated)
    write_jsonl(rejects_path, rejects)
    write_json(metrics_path, metrics)
    print(f"generate: {metrics['generated']} records from {metrics['requests']} requests "
          f"({metrics['cache_hits']} cached, {metrics['teacher_errors']} teacher errors, "
          f"{metrics['parse_rejects']} parse rejects)", file=sys.stderr)
    return metrics
