"""Register the best candidate in the MLflow Model Registry; move `champion` only when it wins.

Policy (`register.policy`): the winner (best `register.metric` among the candidates) becomes `champion` if there
is none; otherwise only if, on the same test data (same digest of ids and labels), its metric is strictly higher
than the champion's and, with `mcnemar`, the paired exact McNemar test of their predictions gives p < `alpha` in
the winner's favour. Anything else (a tie, a loss, a gain within noise) makes it `challenger`.

The champion's per-item predictions come from its register run (the `predictions.json` artifact); a champion
scored on other test data, or registered before that artifact existed, is re-scored here on this test split.
Every candidate is tested against the champion (`candidates` in reports/register.json). The winner's comparison
(`vs_champion`, and the register run's `vs_champion.*` metrics) adds Δ accuracy and its paired bootstrap interval
on the same test items (`delta_ci95`, evaluate.bootstrap/seed/ci_method; none with evaluate.bootstrap 0): a report,
not part of the policy.

With several seeds (train.seeds) the winner is a recipe, registered as its seed nearest the recipe's mean
(`pick_best`), and the gate judges the recipe, not that one run: its metric is the mean over its seeds, and with
`mcnemar` the p-value is the seed bootstrap's (`stats.seed_bootstrap`: test items and seeds resampled, the seeds'
runs against the champion's predictions; `vs_champion.seeds`), so a recipe whose seeds disagree does not take the
champion on one lucky run. With evaluate.bootstrap 0 the p-value stays the representative's McNemar test.
"""

from __future__ import annotations

import logging

import dataclasses
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medaug.data.jsonl import read_json, write_json
from medaug.data.schema import Record, read_records
from medaug.errors import MedaugError
from medaug.evaluate.compare import read_predictions
from medaug.params import Params, untraced
from medaug.paths import Candidate, RegisterIO, TrainIO, candidate
from medaug.tracking import dvc_hashes, flatten, run_tags, setup_mlflow, stage_run

MEDAUG_SRC = Path(__file__).resolve().parents[1]
SERVED_MODEL = str(Path(__file__).with_name("served_model.py"))
"""The registered model's code (models from code)."""
PREDICTIONS_ARTIFACT = "predictions.json"
"""{test id: label} of the registered candidate, logged on its register run."""
MAX_TEXT = 5000
"""Model version descriptions are VARCHAR(5000) in MLflow's SQL stores (tags were too, before MLflow 2.x)."""

log = logging.getLogger(__name__)


def test_digest(records) -> str:
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.id):
        h.update(f"{r.id}\t{r.final_decision}\n".encode())
    return h.hexdigest()


def params_digest(p: Params) -> str:
    """sha256 of every parsed param (defaults included) as canonical JSON: a lineage tag of the registered version,
    which names what ran; not a read of the stage's own params (params.untraced)."""
    with untraced():
        return hashlib.sha256(json.dumps(dataclasses.asdict(p), sort_keys=True).encode()).hexdigest()


def truncate(text: str, limit: int = MAX_TEXT, note: str = "\n\n... (truncated)") -> str:
    """`text` if it fits in `limit` characters, else cut at the last line break that leaves room for `note`."""
    if len(text) <= limit:
        return text
    cut = text[:limit - len(note)]
    return (cut.rsplit("\n", 1)[0] if "\n" in cut else cut) + note


def funnel_line(funnel: dict[str, Any]) -> str:
    """One line from reports/funnel.json: "generated 24 -> kept 17 (validate -1, dedup -4, decontaminate -2)"
    ("requested" when the funnel starts at the generate step, i.e. counts the items the teacher failed on)."""
    steps = funnel.get("steps", {})
    drops = [f"{name} -{step['in'] - step['out']}" for name, step in steps.items() if step["in"] != step["out"]]
    start = "requested" if "generate" in steps else "generated"
    return f"{start} {funnel['in']} -> kept {funnel['kept']}" + (f" ({', '.join(drops)})" if drops else "")


def lineage(root: Path, model: str, variant: str, seed: int) -> dict[str, str]:
    """Git commit and dirty flag, the DVC experiment (tracking.run_tags), and the DVC hashes (from dvc.lock) of the
    data and adapter of the candidate, all of the workspace `root` DVC runs the stage in."""
    tags = run_tags(root)
    md5 = dvc_hashes(root)
    c = Candidate(model, variant, seed)
    data = TrainIO.at(c).train.parent if c.round else TrainIO.at(c).train  # a round's set: its teach stage's folder
    wanted = {"dvc_data_prepared": "data/prepared", "dvc_data_train": data.as_posix(),
              "dvc_model_adapter": f"models/{candidate(model, variant, seed)}"}
    tags.update({tag: md5[path] for tag, path in wanted.items() if path in md5})
    return tags


def pick_best(p: Params, eval_dir: Path) -> tuple[Candidate, dict[Candidate, dict[str, Any]]]:
    """The model to register, and the metrics of every candidate of the current params (stale metrics files of
    removed variants or seeds are ignored). The winner is the (model, variant) with the highest mean of
    register.metric over train.seeds, and of its seeds the one whose score is closest to that mean: a model
    representative of the recipe, not its luckiest seed (whose test score, picked as the max of several, would
    overstate what the recipe gives). Ties go to the first in params order."""
    metrics = {c: read_json(eval_dir / f"{candidate(*c)}.json") for c in p.candidates()}
    if not metrics:
        raise MedaugError("params.yaml: train.models x train.variants is empty, nothing to register")
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in metrics:
        groups.setdefault(c[:2], []).append(c)
    mean = {g: sum(metrics[c][p.register.metric] for c in cs) / len(cs) for g, cs in groups.items()}
    group = max(groups, key=lambda g: mean[g])  # max keeps the first of equals
    best = min(groups[group], key=lambda c: abs(metrics[c][p.register.metric] - mean[group]))
    return best, metrics


@dataclass
class Champion:
    version: str
    value: float
    preds: list[str]
    rescored: bool


def _logged_predictions(run_id: str | None, records: list[Record]) -> list[str] | None:
    """The champion's predictions.json from its register run, if it has one covering every test id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PREDICTIONS_ARTIFACT,
                                                       dst_path=tmp)
            logged = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            return None
    if not isinstance(logged, dict) or any(r.id not in logged for r in records):
        return None
    return [str(logged[r.id]) for r in records]


def current_champion(client, p: Params, digest: str, records: list[Record]) -> Champion | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(p.register.model_name, "champion")
    except MlflowException:
        return None
    task = mv.tags.get("task", "pubmedqa")  # versions from before tasks were data are all PubMedQA
    if task != p.task.name:
        raise MedaugError(f"register: {p.register.model_name}'s champion (v{mv.version}) answers task {task}; this "
                          f"run's task is {p.task.name}: set register.model_name in params.yaml to a name for "
                          f"{p.task.name} (e.g. medaug-{p.task.name}), a registered model answers one task")
    same_data = mv.tags.get("test_digest") == digest and p.register.metric in mv.tags
    preds = _logged_predictions(mv.run_id, records) if same_data else None
    if preds is not None:
        return Champion(mv.version, float(mv.tags[p.register.metric]), preds, rescored=False)
    # Scored on other test data (or registered without its predictions): score it here, on the same records.
    import mlflow.pyfunc

    from medaug.evaluate.metrics import compute_metrics
    from medaug.tracking.pyfunc import model_input

    model = mlflow.pyfunc.load_model(f"models:/{p.register.model_name}/{mv.version}")
    preds = [str(y) for y in model.predict([model_input(r) for r in records])]
    value = float(mv.tags[p.register.metric]) if same_data else \
        float(compute_metrics([r.final_decision for r in records], preds, p.task.choices)[p.register.metric])
    return Champion(mv.version, value, preds, rescored=True)


def wins(p: Params, value: float, champion_value: float, test: dict[str, Any]) -> bool:
    """Whether the winner takes `champion`: its metric (its recipe's mean over seeds, with several) is strictly
    higher and, for `mcnemar`, the test against the champion gives p < alpha in its favour: the seed bootstrap
    (`test["seeds"]`) with several seeds, else McNemar's (more items only it gets right: with macro-F1 as the metric,
    a higher F1 can come with a significantly lower accuracy, which must not count)."""
    if not value > champion_value:
        return False
    if p.register.policy == "higher":
        return True
    if "seeds" in test:
        return test["seeds"]["p_value"] < p.register.alpha and test["seeds"]["delta"] > 0
    return test["p_value"] < p.register.alpha and test["a_only"] > test["b_only"]


def description(best: str, metric: str, value: float, digest: str, tags: dict[str, str],
                datacard_path: Path | None) -> str:
    """The model version description: a short header, then the data card of the training set (truncated)."""
    commit = tags.get("git_commit", "unknown")[:12] + (" (dirty)" if tags.get("git_dirty") == "true" else "")
    header = (f"**{best}**: {metric} {value:.4f} on test data `{digest[:12]}`, commit `{commit}`, "
              f"params `{tags['params_digest'][:12]}`")
    if not (datacard_path and Path(datacard_path).exists()):
        return header
    note = f"\n\n... (truncated; the full data card is the register run's artifact `{Path(datacard_path).name}`)"
    return truncate(header + "\n\n" + Path(datacard_path).read_text(encoding="utf-8"), MAX_TEXT, note)


def run(p: Params, root: Path, io: RegisterIO) -> dict:
    """Register the best candidate of `io.scores` (metrics/eval/<candidate>.json) in the project's registry (the
    MLflow store under `root`), compared on `io.test` with the champion by their predictions (io.eval/<candidate>/
    predictions.jsonl). The winner's recipe (io.datasets: reports/dataset/<recipe>.json and .md, the dataset
    stage's; a round candidate's own, its teach stage's) gives the version its `teacher_model` and `filter_funnel` tags and its description, the recipe's data
    card: its own teachers and items, none for a recipe without generated items. The result to io.out."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    from medaug.evaluate.stats import mcnemar, paired_delta_ci, seed_bootstrap
    from medaug.export import bundle, card, read_meta
    from medaug.tracking.pyfunc import model_input, pip_requirements

    (model_name, variant, seed), metrics = pick_best(p, io.scores)
    best = candidate(model_name, variant, seed)
    records = read_records(io.test, p.task.choices)
    golds = [r.final_decision for r in records]
    digest = test_digest(records)
    preds = {name: read_predictions(Path(io.eval) / name / "predictions.jsonl", records)
             for name in (candidate(*c) for c in metrics)}
    setup_mlflow(root)
    client = MlflowClient()
    champ = current_champion(client, p, digest, records)
    tests = {name: mcnemar(golds, ps, champ.preds) if champ else None for name, ps in preds.items()}
    value = float(metrics[model_name, variant, seed][p.register.metric])
    seeds = [c for c in metrics if c[:2] == (model_name, variant)]  # the winning recipe's runs
    recipe_value = sum(float(metrics[c][p.register.metric]) for c in seeds) / len(seeds)
    vs = tests[best]
    if champ:  # the winner against the champion: McNemar, and Δ accuracy with its paired bootstrap interval
        vs = {**vs, "delta_accuracy": sum((y == g) - (c == g) for g, y, c in zip(golds, preds[best], champ.preds))
              / len(golds)}
        if p.evaluate.bootstrap:
            vs["delta_ci95"] = paired_delta_ci(golds, preds[best], champ.preds, p.evaluate.bootstrap, p.evaluate.seed,
                                               method=p.evaluate.ci_method)
        if len(seeds) > 1 and p.evaluate.bootstrap:  # the recipe, every seed, against the champion
            vs["seeds"] = {"n": len(seeds), p.register.metric: recipe_value,
                           **seed_bootstrap(golds, [preds[candidate(*c)] for c in seeds], [champ.preds],
                                            p.evaluate.bootstrap, p.evaluate.seed)}
    gate_value = recipe_value if len(seeds) > 1 else value
    alias = "champion" if champ is None or wins(p, gate_value, champ.value, vs) else "challenger"

    tags = {"candidate": best, "task": p.task.name, "variant": variant, "seed": str(seed),
            "base_model": p.model_ref(model_name),
            "test_digest": digest, "accuracy": str(metrics[model_name, variant, seed]["accuracy"]),
            "macro_f1": str(metrics[model_name, variant, seed]["macro_f1"]),
            **lineage(root, model_name, variant, seed),
            "params_digest": params_digest(p),
            # trained in (train.precision as it ran); scored in float32 on the GPU when there is one, as evaluate
            "train_precision": read_meta(io.models / best).get("precision", "unknown"), "score_precision": "fp32"}
    recipe_report = Path(io.datasets or "", f"{Candidate(model_name, variant, seed).training_set}.json")
    made = read_json(recipe_report) if io.datasets is not None and recipe_report.exists() else {}
    datacard = recipe_report.with_suffix(".md") if made.get("funnel") else None  # a recipe that generates
    if made.get("teachers"):
        tags["teacher_model"] = truncate(", ".join(made["teachers"]))
    if made.get("funnel"):
        tags["filter_funnel"] = truncate(funnel_line(made["funnel"]))

    run_id = stage_run(root, "register", run_name=f"register-{best}")
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        with untraced():  # MLflow's copy of the params that trained the candidate
            model_params = {"candidate": best, "base_model": tags["base_model"],
                            **{f"train.{k}": v for k, v in dataclasses.asdict(p.train).items() if k != "lora"},
                            **{f"train.lora.{k}": v for k, v in dataclasses.asdict(p.train.lora).items()}}
        mlflow.log_params({**model_params, "register.metric": p.register.metric,
                           "register.policy": p.register.policy, "register.alpha": p.register.alpha,
                           "evaluate.bootstrap": p.evaluate.bootstrap, "evaluate.ci_method": p.evaluate.ci_method})
        for c, m in metrics.items():
            name = candidate(*c)
            mlflow.log_metrics({f"{name}.accuracy": m["accuracy"], f"{name}.macro_f1": m["macro_f1"],
                                **({f"{name}.p_vs_champion": tests[name]["p_value"]} if champ else {})})
        if champ:
            mlflow.log_metrics({"vs_champion.p_value": vs["p_value"],
                                "vs_champion.delta_accuracy": vs["delta_accuracy"],
                                **({f"vs_champion.delta_ci95_{k}": vs["delta_ci95"][k] for k in ("low", "high")}
                                   if "delta_ci95" in vs else {}),
                                **({f"vs_champion.seeds.{k}": float(v) for k, v in vs["seeds"].items()}
                                   if "seeds" in vs else {})})
        mlflow.set_tags(tags)
        mlflow.log_dict({r.id: y for r, y in zip(records, preds[best])}, PREDICTIONS_ARTIFACT)
        for extra in (datacard, recipe_report if made else None):
            if extra is not None and Path(extra).exists():
                mlflow.log_artifact(str(extra))
        model_dir = Path(tmp) / "model"
        meta = bundle(io.models / best, model_dir)
        (model_dir / "README.md").write_text(card(p, best, meta, (model_dir / "adapter_config.json").exists(), root),
                                             encoding="utf-8")
        task_file = Path(tmp) / "task.json"
        task_file.write_text(json.dumps({"task": dataclasses.asdict(p.task), "batch_size": p.evaluate.batch_size}))
        info = mlflow.pyfunc.log_model(
            name=best, python_model=SERVED_MODEL, artifacts={"model": str(model_dir), "task": str(task_file)},
            code_paths=[str(MEDAUG_SRC)], pip_requirements=pip_requirements(tags["base_model"]),
            input_example=[(p.task.examples or [model_input(records[0])])[0]], registered_model_name=p.register.model_name,
            params={k: str(v) for k, v in model_params.items()},
            metadata={"candidate": best, "task": p.task.name, "base_model": tags["base_model"]})
        winner = metrics[model_name, variant, seed]
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        test_set = MetaDataset(resolve_dataset_source(Path(io.test).resolve().as_uri()), name=str(io.test),
                               digest=digest[:36])
        mlflow.log_metrics({k: float(v) for k, v in flatten({k: winner[k] for k in ("accuracy", "macro_f1", "ci95")
                                                             if k in winner}).items() if isinstance(v, float)},
                           model_id=info.model_id, dataset=test_set)  # the Logged Models page: test scores, on what

    version = str(info.registered_model_version)
    for k, v in tags.items():
        client.set_model_version_tag(p.register.model_name, version, k, v)
    about = description(best, p.register.metric, value, digest, tags, datacard)
    client.update_model_version(p.register.model_name, version, description=about)
    client.set_logged_model_tags(info.model_id, {MLFLOW_RUN_NOTE: about})  # the Logged Models page's description
    client.set_registered_model_alias(p.register.model_name, alias, version)
    result = {"model_name": p.register.model_name, "version": int(version), "alias": alias, "candidate": best,
              "metric": p.register.metric, "value": value, "policy": p.register.policy, "alpha": p.register.alpha,
              "previous_champion_version": int(champ.version) if champ else None,
              "previous_champion_value": champ.value if champ else None,
              "vs_champion": {k: vs[k] for k in ("p_value", "a_only", "b_only", "delta_accuracy", "delta_ci95",
                                                 "seeds") if k in vs} if champ else None,
              "candidates": {name: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                                    "p_vs_champion": tests[name]["p_value"] if champ else None}
                             for name, m in ((candidate(*c), m) for c, m in metrics.items())},
              "test_digest": digest}  # no run id: the same result registered again reads the same
    write_json(io.out, result)
    log.info(f"registered {p.register.model_name} v{version} ({best}, {p.register.metric}={value:.4f}) as @{alias}, "
             f"run {run_id}"
             + (f"; champion v{champ.version} had {champ.value:.4f}{' (re-scored)' if champ.rescored else ''}, "
                f"McNemar p={vs['p_value']:.3g} ({vs['a_only']} vs {vs['b_only']} discordant), "
                f"Δ accuracy {vs['delta_accuracy']:+.3f}"
                + (f" [{vs['delta_ci95']['low']:+.3f}, {vs['delta_ci95']['high']:+.3f}]" if "delta_ci95" in vs else "")
                + (f"; the recipe's {vs['seeds']['n']} seeds: {p.register.metric} {recipe_value:.4f}, seed bootstrap "
                   f"p={vs['seeds']['p_value']:.3g}" if "seeds" in vs else "")
                if champ else ""))
    return result

