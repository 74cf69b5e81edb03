"""The generate stage in a test project: train items to augment, generate params for the HTTP test teacher, a run
of the stage in a project folder, and the rejects it wrote."""

import json
from pathlib import Path

from medaug.augment.generate import run
from medaug.data.schema import Record
from medaug.params import parse_params
from medaug.paths import GenerateIO


def make_train(n: int) -> list[Record]:
    labels = ["yes", "no", "maybe"]
    return [Record(id=str(1000 + i), question=f"Does treatment {i} improve outcome {i % 3}?",
                   contexts=[f"We enrolled {20 + i} patients in trial {i}.", f"Outcome {i % 3} changed by {i}%."],
                   final_decision=labels[i % 3], long_answer=f"Treatment {i} had an effect.",
                   meshes=["Humans", f"Drug{i}"], labels=["METHODS", "RESULTS"]) for i in range(n)]


def params(teacher=None, **generate):
    return parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 2, "max_attempts": 2,
                                     "backoff_s": 0.01, "max_concurrency": 4, **(teacher or {})},
                         "generate": {"strategies": ["rewrite", "new"], "per_strategy": 4, "seed": 0, **generate}})


def run_in(root: Path, p):
    return run(p, root, GenerateIO.at(root))


def read_rejects(project: Path) -> list[dict]:
    return [json.loads(x) for x in (project / "data/generated/rejects.jsonl").read_text().splitlines()]
