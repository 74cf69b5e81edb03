"""The generation strategies' test data: train items with given labels, generate params for the HTTP test teacher,
a deterministic responder that follows every strategy's prompt, and a small user corpus."""

import json
import re
from pathlib import Path

from medaug.augment.strategies.base import Job
from medaug.data.schema import Record
from medaug.params import Params, parse_params
from support.openai_server import pubmedqa_responder

LABELS = ("yes", "no", "maybe")


def job(strategy: str, item: Record, template: str = "", target: str = "", letters=(), labels=LABELS,
        steps: int = 0) -> Job:
    """A request of `strategy` about `item` with the prompt text `template`, on a label task with `labels` or (with
    `letters`) a multiple-choice one."""
    return Job(strategy, item, template, "", target=target, letters=tuple(letters),
               labels=() if letters else tuple(labels), steps=steps)


def check(strategy: str, fields: dict, item: Record, template: str = "", target: str = "", letters=(),
          labels=LABELS, steps: int = 0):
    """What the strategy makes of a schema-valid reply `fields`: the record's fields, or the reject reason."""
    return job(strategy, item, template, target, letters, labels, steps).check(fields)


def schema(strategy: str, letters=(), labels=LABELS, steps: int = 0) -> dict:
    """The JSON schema of the strategy's reply on that task."""
    return job(strategy, Record(id="x", question="", contexts=[], final_decision=""), letters=letters,
               labels=labels, steps=steps).schema


def task_field(prompt: str, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(.*)$", prompt.rsplit("### Task", 1)[-1], re.MULTILINE)
    return m.group(1).strip() if m else ""


def topic(text: str) -> str:
    return " ".join(re.findall(r"[A-Za-z0-9-]+", text)[:8]).lower()


def responder(prompt: str) -> str:
    """A deterministic teacher for every prompt: new_target answers with the label asked for, grounded asks about
    the passage's first words, mesh about its topic; rewrite and new as support/openai_server.py."""
    explanation = lambda text: re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0]  # noqa: E731
    if "one whose answer is the answer given" in prompt:
        abstract = task_field(prompt, "Abstract")
        return json.dumps({"question": f"Does the study of {topic(abstract)} show the reported effect?",
                           "answer": task_field(prompt, "Answer"), "explanation": explanation(abstract)})
    if "MeSH topic:" in prompt:
        abstract, heading = task_field(prompt, "Abstract"), task_field(prompt, "MeSH topic")
        return json.dumps({"question": f"Regarding {heading}, did the study of {topic(abstract)} find an effect?",
                           "answer": LABELS[len(abstract) % 3], "explanation": explanation(abstract)})
    if "Passage:" in prompt:
        passage = task_field(prompt, "Passage")
        return json.dumps({"question": f"Does the passage on {topic(passage)} support its main claim?",
                           "answer": LABELS[len(passage) % 3], "explanation": explanation(passage)})
    return pubmedqa_responder(prompt)


def make_train(labels: str, meshes=None) -> list[Record]:
    """One record per letter of `labels` (y/n/m)."""
    full = {"y": "yes", "n": "no", "m": "maybe"}
    return [Record(id=str(2000 + i), question=f"Does treatment {i} improve outcome {i % 4}?",
                   contexts=[f"We enrolled {30 + i} patients in trial {i}.", f"Outcome {i % 4} changed by {i}%."],
                   final_decision=full[c], long_answer=f"Treatment {i} had an effect.",
                   meshes=meshes[i] if meshes else ["Humans", f"Drug{i}"]) for i, c in enumerate(labels)]


def params(teacher=None, **generate) -> Params:
    return parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 2,
                                     "backoff_s": 0.01, "max_concurrency": 4, **(teacher or {})},
                         "generate": {"per_strategy": 4, "seed": 0, **generate}})


def words_(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def write_corpus(folder: Path) -> Path:
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters/02-kidney.md").write_text(
        "# Kidney\n\n## Acute kidney injury\n\n" + " ".join(words_("k", 30)) + "\n\n" + " ".join(words_("r", 10)))
    (folder / "01-notes.txt").write_text(" ".join(words_("t", 8)) + "\n   \n" + "second paragraph here.\n")
    (folder / "abstracts.jsonl").write_text(
        json.dumps({"id": "A7", "title": "Statins", "text": " ".join(words_("s", 25))}) + "\n\n" +
        json.dumps({"text": "Untitled abstract text."}) + "\n")
    (folder / ".hidden").mkdir()
    (folder / ".hidden/skip.txt").write_text("never read")
    (folder / "figure.pdf").write_bytes(b"%PDF")
    return folder

