"""The register stage's test data: a 20-item test split the tiny model answers variously, candidates' predictions
right on the first n items, and a register run in the current folder (the `register_steps` fixture of
tests/conftest.py builds five registrations with them)."""

import random
from pathlib import Path

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record
from medaug.evaluate.metrics import compute_metrics
from medaug.params import parse_params
from medaug.paths import RegisterIO
from medaug.tracking import register

NAME = "medaug-pubmedqa"
LABELS = ["yes", "no", "maybe"]
N = 20
WORDS = ("blood pressure drug adults trial mortality cancer risk outcome cohort patients lower higher dose weeks "
         "randomized placebo significant").split()
_rng = random.Random(0)  # word salad: the tiny model's answers vary with it (templated questions get one answer)
TEST = [Record(id=f"t{i}", question=" ".join(_rng.choices(WORDS, k=3 + i % 7)) + "?",
               contexts=[" ".join(_rng.choices(WORDS, k=5 + 3 * (i % 5))), " ".join(_rng.choices(WORDS, k=4))],
               final_decision=LABELS[i % 3]) for i in range(N)]
GOLDS = [r.final_decision for r in TEST]
FUNNEL = {"in": 24, "kept": 17, "dropped": {"duplicate": 4, "overlaps_test": 2, "too_short": 1},
          "steps": {"validate": {"in": 24, "out": 23, "dropped": {"too_short": 1}},
                    "dedup": {"in": 23, "out": 19, "dropped": {"duplicate": 4}},
                    "decontaminate": {"in": 19, "out": 17, "dropped": {"overlaps_test": 2}},
                    "balance": {"in": 17, "out": 17, "dropped": {}}},
          "by_source": {"rewrite": {"in": 12, "kept": 9, "dropped": {}}, "new": {"in": 12, "kept": 8, "dropped": {}}}}
CARD = "# Data card: recipe `augmented`\n\n- Teacher `openai:fake-teacher`: temperature 0.7, top_p 1.0, seed 0; for new\n"
LONG_CARD = CARD + "\n| heading | original | generated, kept | augmented |\n|---|---|---|---|\n" + "".join(
    f"| Heading {i} | {i} | 1 | {i + 1} |\n" for i in range(400))
LOCK = {"stages": {"prepare": {"outs": [{"path": "data/prepared", "md5": "aaa.dir"},
                                        {"path": "data/train/original.jsonl", "md5": "bbb"}]},
                   "filter": {"outs": [{"path": "data/train/augmented.jsonl", "md5": "ccc"}]},
                   "train@tiny-original-0": {"outs": [{"path": "models/tiny-original-0", "md5": "ddd.dir"}]},
                   "train@tiny-augmented-0": {"outs": [{"path": "models/tiny-augmented-0", "md5": "eee.dir"}]}}}


def right_on(n_right):
    """Predictions right on the first n_right test items and wrong on the rest (so the McNemar counts of two such
    lists are their difference: a_only = max(0, a - b), b_only = max(0, b - a))."""
    return [g if i < n_right else LABELS[(LABELS.index(g) + 1) % 3] for i, g in enumerate(GOLDS)]


def params(policy):
    return parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"]},
                         "teacher": {"backend": "openai", "model": "fake-teacher"},
                         "register": {"policy": policy, "alpha": 0.05}})


def register_step(policy, preds, card=CARD):
    """Write each candidate's eval metrics and predictions.jsonl (as the evaluate stage does), then register."""
    for name, ps in preds.items():
        m = compute_metrics(GOLDS, ps)
        write_json(Path("metrics/eval") / f"{name}.json", {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
        write_json(Path("reports/eval") / f"{name}.json", m)  # the whole report: the model card's n and scores
        write_jsonl(Path("eval") / name / "predictions.jsonl",
                    ({"id": r.id, "gold": r.final_decision, "prediction": y} for r, y in zip(TEST, ps)))
    recipes = Path("reports/dataset")  # what the dataset stage writes of each recipe: its card, teachers, funnel
    recipes.mkdir(parents=True, exist_ok=True)
    (recipes / "augmented.md").write_text(card)
    write_json(recipes / "augmented.json", {"teachers": ["openai:fake-teacher"], "funnel": FUNNEL})
    (recipes / "original.md").write_text("# Data card: recipe `original`\n\nThe train split alone.\n")
    write_json(recipes / "original.json", {})
    p = params(policy)
    reg = register.run(p, Path.cwd(), RegisterIO.at())
    return p, reg, aliases()


def aliases():
    """{alias: version} in the registry now."""
    from mlflow import MlflowClient

    return {a: int(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()}
