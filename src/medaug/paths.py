"""Where each DVC stage reads and writes (relative to the project root). dvc.yaml declares the same paths."""

from pathlib import Path

PREPARED = Path("data/prepared")
GENERATED = Path("data/generated")
FILTERED = Path("data/filtered")
TRAIN_SETS = Path("data/train")  # data/train/<variant>.jsonl: the training set of each variant
MODELS = Path("models")
EVAL = Path("eval")  # eval/<candidate>/: the registry reads the predictions of every candidate here
TEACHER_EVAL = Path("eval-teacher")  # the teacher baseline, outside eval/: no registry input
METRICS = Path("metrics")
CONFUSION = Path("plots/confusion")
PER_CLASS = Path("plots/per_class")  # plots/per_class/<candidate>.json: {class, precision, recall, f1} rows
FUNNEL_PLOT = Path("plots/funnel.json")
TRAIN_PLOTS = Path("plots/train")  # plots/train/<candidate>.json: {step, loss, learning_rate} rows
DEV_PLOTS = Path("plots/dev")  # plots/dev/<candidate>.json: {step, dev_accuracy, dev_macro_f1, dev_loss} rows
PRETRAINED = Path("models/pretrain")  # models/pretrain/<model>: continued pretraining, base of dapt-<variant>


def candidate(model: str, variant: str) -> str:
    """The readable name DVC's matrix gives a candidate, e.g. `gemma270m-augmented`."""
    return f"{model}-{variant}"
