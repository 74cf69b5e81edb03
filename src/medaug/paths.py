"""Where each DVC stage reads and writes (relative to the project root; dvc.yaml declares the same paths), one
frozen value per stage naming its inputs and outputs (`FilterIO.at(root)`), and the names of candidates."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
PREPARE_REPORT = REPORTS / "prepare.json"  # split counts and data.source's path, sha256 and origin
DATASETS = REPORTS / "dataset"  # <recipe>.json (counts, cost, teachers, funnel) and <recipe>.md (its data card)
CONFUSION = Path("plots/confusion")
PER_CLASS = Path("plots/per_class")  # plots/per_class/<candidate>.json: {class, precision, recall, f1} rows
FUNNEL_PLOT = Path("plots/funnel.json")
VIEW = REPORTS / "view.html"  # medaug view: every item the teacher was asked for, kept or dropped and why
PROFILE = REPORTS / "profile.json"  # the data profile (medaug.data.profile): per strategy and teacher, and all kept
PROFILE_PLOT = Path("plots/profile.json")  # a row per profile group: novelty, spread, distinct-2 against train's
VARIANTS_PLOT = Path("plots/variants.json")  # a row per recipe: accuracy (mean over seeds, CI), generated items, cost
TRAIN_PLOTS = Path("plots/train")  # plots/train/<candidate>.json: {step, loss, learning_rate} rows
DEV_PLOTS = Path("plots/dev")  # plots/dev/<candidate>.json: {step, dev_accuracy, dev_macro_f1, dev_loss} rows
CANDIDATES_PLOT = Path("plots/candidates.json")  # per candidate and metric: value, 95% CI; the baselines
CURVES = Path("plots/curves")  # train.json, dev.json: every candidate's curves in one file each, overlaid
PRETRAINED = Path("models/pretrain")  # models/pretrain/<model>: continued pretraining, base of dapt-<variant>
PROBES = Path("data/probe")  # data/probe/<round candidate>.jsonl: its student before, scored on the train split
ROUNDS = Path("data/rounds")  # data/rounds/<candidate>/: a round's parents, items, funnel and training set
ROUND_REPORTS = REPORTS / "dataset"  # reports/dataset/<round candidate>.json: its training set (parents, funnel,
# cost, items so far), beside the recipes' own: compare reads both from there
ROUNDS_PLOT = Path("plots/rounds.json")  # a row per round candidate: accuracy against round and cumulative cost

BASELINE = "original"
"""The recipe every other is compared with (compare's Δ), and round 0 of every recipe with rounds."""


ZERO_SHOT = "zero-shot"
"""The variant of a model's untrained base, scored by `zero-shot@<model>`: candidate `<model>-zero-shot`."""


def candidate(model: str, variant: str, seed: int | None = None) -> str:
    """The name DVC's matrix gives a candidate, e.g. `gemma270m-augmented-0` (trained with seed 0); the untrained
    base has no seed: `gemma270m-zero-shot`."""
    return f"{model}-{variant}" + ("" if seed is None else f"-{seed}")


DAPT = "dapt-"
"""The variant prefix of a candidate trained from its model's continued pretraining: `dapt-augmented` is the
`augmented` recipe on models/pretrain/<model>. Nothing else spells it: use `Candidate`."""


ROUND = re.compile(r"-r(\d+)$")
"""The end of a round candidate's variant: `targeted-r2` is round 2 of recipe `targeted` (params.py refuses a
recipe named like that)."""


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

    @classmethod
    def of_round(cls, model: str, recipe: str, k: int, seed: int | None) -> Candidate:
        """Round `k` of `recipe`'s chain for `model` and `seed`; round 0 is the `original` candidate."""
        return cls(model, BASELINE if k == 0 else f"{recipe}-r{k}", seed)

    @staticmethod
    def recipe_of(variant: str) -> str:
        """The recipe of a variant: `augmented` for `augmented` and `dapt-augmented`, `targeted` for
        `targeted-r2`."""
        return ROUND.sub("", variant.removeprefix(DAPT))

    @property
    def round(self) -> int | None:
        """Its round (>= 1) when it is a round candidate, else None."""
        m = ROUND.search(self.variant)
        return int(m.group(1)) if m else None

    @property
    def training_set(self) -> str:
        """The name its training set goes by in reports/dataset (<name>.json, its data card <name>.md): the
        recipe's, or a round candidate's own (each chain builds its own set)."""
        return self.name if self.round else self.recipe

    @property
    def previous(self) -> Candidate:
        """A round candidate's student of the round before (round 0: the `original` candidate)."""
        if self.round is None:
            raise ValueError(f"{self.name} is no round candidate")
        return Candidate.of_round(self.model, self.recipe, self.round - 1, self.seed)

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
        own matrix's `train-dapt@<model>-<recipe>-<seed>`, for a round one its round's `train-r<k>@<model>-<recipe>-
        <seed>` (also probe, teach); the untrained base is scored by `zero-shot@<model>`."""
        if self.variant == ZERO_SHOT:
            return f"{ZERO_SHOT}@{self.model}"
        if self.round is not None:
            return f"{kind}-r{self.round}@{self.model}-{self.recipe}-{self.seed}"
        matrix = f"{kind}-dapt" if self.from_pretraining else kind
        return f"{matrix}@{self.model}-{self.recipe}-{self.seed}"


# ---------------------------------------------------------------- what each stage reads and writes
# One frozen value per stage: `<Stage>IO.at(root, ...)` is the DVC layout above under `root` (what dvc.yaml
# declares, so the stage scripts pass `.at()`); a test or a notebook builds one with its own paths by keyword.


@dataclass(frozen=True)
class GenerateIO:
    prepared: Path  # data/prepared: train/dev/test.jsonl
    generated: Path
    rejects: Path  # what the teacher was asked and never usably answered, with the reason
    report: Path

    @classmethod
    def at(cls, root: Path = Path()) -> GenerateIO:
        return cls(root / PREPARED, root / GENERATED / "generated.jsonl", root / GENERATED / "rejects.jsonl",
                   root / REPORTS / "generate.json")


@dataclass(frozen=True)
class FilterIO:
    prepared: Path
    generated: Path
    kept: Path
    rejects: Path  # every dropped item with its step and reason
    funnel: Path  # the report
    generate_rejects: Path | None = None  # generate's: the funnel then starts from every item asked for
    plot: Path | None = None
    datacard: Path | None = None

    @classmethod
    def at(cls, root: Path = Path()) -> FilterIO:
        return cls(root / PREPARED, root / GENERATED / "generated.jsonl", root / FILTERED / "kept.jsonl",
                   root / FILTERED / "rejects.jsonl", root / REPORTS / "funnel.json",
                   root / GENERATED / "rejects.jsonl", root / FUNNEL_PLOT, root / FILTERED / "datacard.md")


@dataclass(frozen=True)
class DatasetIO:
    train: Path  # the train split
    kept: Path
    generate_report: Path  # with funnel_report: what each kept item cost
    funnel_report: Path
    out: Path  # data/train/<recipe>.jsonl
    report: Path  # reports/dataset/<recipe>.json: counts, cost, and the recipe's teachers and funnel
    card: Path  # reports/dataset/<recipe>.md: the recipe's data card
    generated: Path  # with generate_rejects and filter_rejects: every item asked for, for the recipe's funnel
    generate_rejects: Path
    filter_rejects: Path

    @classmethod
    def at(cls, recipe: str, root: Path = Path()) -> DatasetIO:
        return cls(root / PREPARED / "train.jsonl", root / FILTERED / "kept.jsonl", root / REPORTS / "generate.json",
                   root / REPORTS / "funnel.json", root / TRAIN_SETS / f"{recipe}.jsonl",
                   root / DATASETS / f"{recipe}.json", root / DATASETS / f"{recipe}.md",
                   root / GENERATED / "generated.jsonl", root / GENERATED / "rejects.jsonl",
                   root / FILTERED / "rejects.jsonl")


@dataclass(frozen=True)
class ProbeIO:
    """probe-r<k>: round k's student before (round k-1's) scored on the train split, what round k picks from."""
    train: Path
    adapter: Path  # the student
    out: Path  # data/probe/<round candidate>.jsonl: {id, gold, prediction, logprobs, margin} per train item
    report: Path  # reports/probe/<round candidate>.json: error rate, margins

    @classmethod
    def at(cls, c: Candidate, root: Path = Path()) -> ProbeIO:
        return cls(root / PREPARED / "train.jsonl", root / MODELS / c.previous.name,
                   root / PROBES / f"{c.name}.jsonl", root / REPORTS / "probe" / f"{c.name}.json")


@dataclass(frozen=True)
class TeachIO:
    """teach-r<k>: a round's parents, the teacher's items from them, the filter, and the round's training set."""
    prepared: Path  # train/dev/test.jsonl: the filter's decontamination and the parents
    probe: Path  # the previous student's scores (ProbeIO.out)
    before: Path  # the previous round's training set (round 1: data/train/original.jsonl)
    out: Path  # data/rounds/<candidate>/: parents, generated, rejects, kept, train.jsonl
    report: Path  # reports/dataset/<candidate>.json
    card: Path | None = None  # reports/dataset/<candidate>.md: the round's data card

    @classmethod
    def at(cls, c: Candidate, root: Path = Path()) -> TeachIO:
        before = TrainIO.at(c.previous, root).train
        return cls(root / PREPARED, ProbeIO.at(c, root).out, before, root / ROUNDS / c.name,
                   root / ROUND_REPORTS / f"{c.name}.json", root / ROUND_REPORTS / f"{c.name}.md")


@dataclass(frozen=True)
class PretrainIO:
    corpus: Path
    prepared: Path  # its test split is what the corpus must not leak
    out: Path
    report: Path
    plot: Path | None = None

    @classmethod
    def at(cls, model: str, corpus: Path, root: Path = Path()) -> PretrainIO:
        return cls(root / corpus, root / PREPARED, root / PRETRAINED / model, root / REPORTS / "pretrain" /
                   f"{model}.json", root / TRAIN_PLOTS / f"pretrain-{model}.json")


@dataclass(frozen=True)
class TrainIO:
    train: Path  # data/train/<recipe>.jsonl
    out: Path  # the adapter (or full model)
    report: Path
    dev: Path | None = None  # scored as training goes; the best checkpoint is kept
    plots: tuple[Path, Path] | None = None  # (train rows, dev rows)

    @classmethod
    def at(cls, c: Candidate, root: Path = Path()) -> TrainIO:
        data = root / ROUNDS / c.name / "train.jsonl" if c.round else root / TRAIN_SETS / f"{c.recipe}.jsonl"
        return cls(data, root / MODELS / c.name,
                   root / REPORTS / "train" / f"{c.name}.json", root / PREPARED / "dev.jsonl",
                   (root / TRAIN_PLOTS / f"{c.name}.json", root / DEV_PLOTS / f"{c.name}.json"))


@dataclass(frozen=True)
class ScoredIO:
    """What scoring a test split writes (evaluate.results.write_results): the evaluate stages and the teacher's."""
    test: Path
    out: Path  # predictions.jsonl and the official predictions.json
    report: Path
    confusion: Path
    per_class: Path


@dataclass(frozen=True)
class EvaluateIO(ScoredIO):
    adapter: Path | None = None  # none for the untrained base (zero-shot)
    zero_shot: Path | None = None  # the base's predictions: a trained candidate is compared with them

    @classmethod
    def at(cls, c: Candidate, root: Path = Path()) -> EvaluateIO:
        trained = c.variant != ZERO_SHOT
        return cls(root / PREPARED / "test.jsonl", root / EVAL / c.name, root / REPORTS / "eval" / f"{c.name}.json",
                   root / CONFUSION / f"{c.name}.json", root / PER_CLASS / f"{c.name}.json",
                   root / MODELS / c.name if trained else None,
                   root / EVAL / candidate(c.model, ZERO_SHOT) / "predictions.jsonl" if trained else None)


@dataclass(frozen=True)
class TeacherIO(ScoredIO):
    train: Path  # the shots come from here

    @classmethod
    def at(cls, root: Path = Path()) -> TeacherIO:
        return cls(root / PREPARED / "test.jsonl", root / TEACHER_EVAL, root / REPORTS / "teacher.json",
                   root / CONFUSION / "teacher.json", root / PER_CLASS / "teacher.json",
                   root / PREPARED / "train.jsonl")


@dataclass(frozen=True)
class CompareIO:
    test: Path
    eval: Path  # eval/<candidate>/predictions.jsonl
    datasets: Path  # reports/dataset/<recipe>.json
    out: Path  # reports/variants.json: the table of recipes
    recipes_plot: Path
    # the charts of every candidate (compare.write_plots)
    scores: Path | None = None  # metrics/eval/<candidate>.json
    teacher_scores: Path | None = None
    teacher_report: Path | None = None
    train_curves: Path | None = None  # plots/train/
    dev_curves: Path | None = None
    candidates_plot: Path | None = None
    curves: Path | None = None  # plots/curves/: every candidate's curves in one file each
    rounds: Path | None = None  # reports/dataset/<round candidate>.json: a round's items and cost so far
    rounds_plot: Path | None = None  # plots/rounds.json: accuracy against round and teacher cost

    @classmethod
    def at(cls, root: Path = Path()) -> CompareIO:
        return cls(root / PREPARED / "test.jsonl", root / EVAL, root / REPORTS / "dataset",
                   root / REPORTS / "variants.json", root / VARIANTS_PLOT, root / METRICS / "eval",
                   root / METRICS / "teacher.json", root / REPORTS / "teacher.json", root / TRAIN_PLOTS,
                   root / DEV_PLOTS, root / CANDIDATES_PLOT, root / CURVES, root / ROUND_REPORTS,
                   root / ROUNDS_PLOT)


@dataclass(frozen=True)
class RegisterIO:
    scores: Path  # metrics/eval/<candidate>.json: the champion is picked from these
    eval: Path  # eval/<candidate>/predictions.jsonl
    models: Path
    test: Path
    out: Path  # reports/register.json
    datasets: Path | None = None  # reports/dataset: the winner recipe's <recipe>.md (the version's description) and
    # <recipe>.json (its teacher_model and filter_funnel tags)

    @classmethod
    def at(cls, root: Path = Path()) -> RegisterIO:
        return cls(root / METRICS / "eval", root / EVAL, root / MODELS, root / PREPARED / "test.jsonl",
                   root / REPORTS / "register.json", root / DATASETS)


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
