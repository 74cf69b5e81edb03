"""Where each DVC stage reads and writes (relative to the project root; dvc.yaml declares the same paths), and the
names of candidates."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

EXPERIMENT_WORKSPACES = (".dvc", "tmp", "exps")
"""`dvc exp run --temp` and `--queue` run each experiment in a throw-away copy under <project>/.dvc/tmp/exps/."""

PREPARED = Path("data/prepared")
GENERATED = Path("data/generated")
FILTERED = Path("data/filtered")
TRAIN_SETS = Path("data/train")  # data/train/<variant>.jsonl: the training set of each variant
MODELS = Path("models")
EVAL = Path("eval")  # eval/<candidate>/: the registry reads the predictions of every candidate here
TEACHER_EVAL = Path("eval-teacher")  # the teacher baseline, outside eval/: no registry input
METRICS = Path("metrics")  # the headline of each report (medaug.headline): what `dvc exp show` lists
REPORTS = Path("reports")  # each stage's whole report, a plain output in git: per-class, funnel reasons, usage
CONFUSION = Path("plots/confusion")
PER_CLASS = Path("plots/per_class")  # plots/per_class/<candidate>.json: {class, precision, recall, f1} rows
FUNNEL_PLOT = Path("plots/funnel.json")
VARIANTS_PLOT = Path("plots/variants.json")  # a row per recipe: accuracy (mean over seeds, CI), generated items, cost
TRAIN_PLOTS = Path("plots/train")  # plots/train/<candidate>.json: {step, loss, learning_rate} rows
DEV_PLOTS = Path("plots/dev")  # plots/dev/<candidate>.json: {step, dev_accuracy, dev_macro_f1, dev_loss} rows
CANDIDATES_PLOT = Path("plots/candidates.json")  # per candidate and metric: value, 95% CI; the baselines
CURVES = Path("plots/curves")  # train.json, dev.json: every candidate's curves in one file each, overlaid
PRETRAINED = Path("models/pretrain")  # models/pretrain/<model>: continued pretraining, base of dapt-<variant>


def candidate(model: str, variant: str, seed: int | None = None) -> str:
    """The name DVC's matrix gives a candidate, e.g. `gemma270m-augmented-0` (trained with seed 0); the untrained
    base has no seed: `gemma270m-zero-shot`."""
    return f"{model}-{variant}" + ("" if seed is None else f"-{seed}")


DAPT = "dapt-"
"""The variant prefix of a candidate trained from its model's continued pretraining: `dapt-augmented` is the
`augmented` recipe on models/pretrain/<model>. Nothing else spells it: use `Candidate`."""


class Candidate(NamedTuple):
    """A trained candidate: a model (a key of params `models`), a variant (a recipe, a key of `variants`, or
    `dapt-<recipe>`: that recipe from the model's continued pretraining) and a seed. A tuple, so `for model,
    variant, seed in p.candidates()` reads it; its name, recipe and DVC stages are parsed and formatted here only."""
    model: str
    variant: str
    seed: int | None = None

    @classmethod
    def dapt(cls, model: str, recipe: str, seed: int | None = None) -> Candidate:
        """The candidate of `recipe` trained from `model`'s continued pretraining."""
        return cls(model, DAPT + recipe, seed)

    @staticmethod
    def recipe_of(variant: str) -> str:
        """The recipe (training set) of a variant: `augmented` for both `augmented` and `dapt-augmented`."""
        return variant.removeprefix(DAPT)

    @staticmethod
    def is_dapt(variant: str) -> bool:
        return variant.startswith(DAPT)

    @property
    def recipe(self) -> str:
        return self.recipe_of(self.variant)

    @property
    def from_pretraining(self) -> bool:
        return self.is_dapt(self.variant)

    @property
    def name(self) -> str:
        return candidate(self.model, self.variant, self.seed)

    def stage(self, kind: str) -> str:
        """Its DVC stage of `kind` (train, evaluate): `train@<model>-<recipe>-<seed>`, or for a dapt candidate its
        own matrix's `train-dapt@<model>-<recipe>-<seed>`."""
        matrix = f"{kind}-dapt" if self.from_pretraining else kind
        return f"{matrix}@{self.model}-{self.recipe}-{self.seed}"


def project_root(workspace: Path | None = None) -> Path:
    """The project that owns `workspace` (default: the working directory): the repository around DVC's
    experiment workspace when `workspace` is one (<project>/.dvc/tmp/exps/...), else `workspace` itself.

    State that must outlive a temp or queued experiment lives here, and only that: the MLflow store and artifacts
    (tracking.setup_mlflow) and the teacher's request cache (llm.teacher.make_teacher). Data outputs stay in the
    workspace DVC runs the stage in. DVC exports the same folder as DVC_ROOT, but child processes inherit that
    variable, also ones working in another project (a test's tmp project): the path itself is the evidence."""
    path = Path(workspace or Path.cwd()).resolve()
    parts, n = path.parts, len(EXPERIMENT_WORKSPACES)
    for i in range(1, len(parts) - n):  # the outermost: the copy of a copy still belongs to the first project
        if parts[i:i + n] == EXPERIMENT_WORKSPACES:
            return Path(*parts[:i])
    return path
