"""A model published on the hub, served from a local cache in the hub's own layout (the `hub` fixture of
tests/conftest.py), and a tiny candidate trained on it."""

from pathlib import Path

from medaug.data.schema import Record, write_records
from medaug.params import parse_params
from medaug.paths import Candidate, TrainIO
from medaug.train import run

HUB_ID = "medaug-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def train_candidate(root: Path, ref: str) -> tuple:
    p = parse_params({"models": {"tiny": ref}, "task": {"max_seq_len": 64},
                      "train": {"models": ["tiny"], "batch_size": 4, "grad_accum": 1, "max_steps": 3}})
    labels = ["yes", "no", "maybe"]
    records = [Record(id=f"t{i}", question=f"Did outcome {i} improve?", contexts=[f"We followed {i} patients."],
                      final_decision=labels[i % 3]) for i in range(8)]
    write_records(root / "train.jsonl", records)
    out = root / "models" / "tiny-original-0"
    run(p, Candidate("tiny", "original", 0), TrainIO(root / "train.jsonl", out,
                                                     root / "reports" / "train" / "tiny-original-0.json"))
    return p, out
