"""Register the best candidate in the MLflow Model Registry; move `champion` only when it wins.

Policy: the winner becomes `champion` if there is none, or if its `register.metric` on the same test data
(same digest of ids and labels) is strictly higher than the champion's. A tie or a loss makes it `challenger`.
When the champion was scored on other test data, it is re-scored on this test split before comparing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from medaug.data.jsonl import read_json, write_json
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.params import Params
from medaug.paths import candidate
from medaug.tracking import setup_mlflow

MEDAUG_SRC = Path(__file__).resolve().parents[1]


def test_digest(records) -> str:
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.id):
        h.update(f"{r.id}\t{r.final_decision}\n".encode())
    return h.hexdigest()


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""


def lineage(root: Path, model: str, variant: str) -> dict[str, str]:
    """Git commit and dirty flag, and the DVC hashes (from dvc.lock) of the data and adapter of the candidate."""
    tags = {"git_commit": _git(root, "rev-parse", "HEAD") or "unknown",
            "git_dirty": str(bool(_git(root, "status", "--porcelain", "--untracked-files=no"))).lower()}
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {}
    md5 = {out["path"]: out.get("md5", "") for stage in (lock or {}).get("stages", {}).values()
           for out in stage.get("outs", [])}
    wanted = {"dvc_data_prepared": "data/prepared", "dvc_data_train": f"data/train/{variant.removeprefix('dapt-')}.jsonl",
              "dvc_model_adapter": f"models/{candidate(model, variant)}"}
    tags.update({tag: md5[path] for tag, path in wanted.items() if path in md5})
    return tags


def pick_best(p: Params, eval_dir: Path) -> tuple[tuple[str, str], dict[tuple[str, str], dict[str, Any]]]:
    """The candidates of the current params (stale metrics files of removed variants are ignored)."""
    metrics = {(m, v): read_json(eval_dir / f"{candidate(m, v)}.json") for m, v in p.candidates()}
    if not metrics:
        raise MedaugError("params.yaml: train.models x train.variants is empty, nothing to register")
    best = max(metrics, key=lambda mv: metrics[mv][p.register.metric])  # the first wins a tie
    return best, metrics


def champion_score(client, p: Params, digest: str, records) -> tuple[str | None, float | None]:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(p.register.model_name, "champion")
    except MlflowException:
        return None, None
    if mv.tags.get("test_digest") == digest and p.register.metric in mv.tags:
        return mv.version, float(mv.tags[p.register.metric])
    # Scored on other test data: score it again here, on the same records as the candidate.
    import mlflow.pyfunc

    from medaug.evaluate import compute_metrics

    model = mlflow.pyfunc.load_model(f"models:/{p.register.model_name}@champion")
    preds = model.predict([{"question": r.question, "contexts": r.contexts} for r in records])
    return mv.version, float(compute_metrics([r.final_decision for r in records], list(preds))[p.register.metric])


def run(p: Params, root: Path, eval_dir: Path, models_dir: Path, test_path: Path, out_path: Path) -> dict:
    import mlflow
    from mlflow import MlflowClient

    from medaug.evaluate import load_candidate
    from medaug.tracking.pyfunc import PIP_REQUIREMENTS, PubMedQAClassifier

    (model_name, variant), metrics = pick_best(p, eval_dir)
    best = candidate(model_name, variant)
    records = read_records(test_path)
    digest = test_digest(records)
    setup_mlflow(root)
    client = MlflowClient()
    value = float(metrics[model_name, variant][p.register.metric])
    tags = {"candidate": best, "base_model": p.model_ref(model_name), "test_digest": digest,
            "accuracy": str(metrics[model_name, variant]["accuracy"]),
            "macro_f1": str(metrics[model_name, variant]["macro_f1"]), **lineage(root, model_name, variant)}

    with mlflow.start_run(run_name=f"register-{best}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"candidate": best, "register.metric": p.register.metric, "base_model": tags["base_model"],
                           **{f"train.{k}": v for k, v in dataclasses.asdict(p.train).items() if k != "lora"},
                           **{f"train.lora.{k}": v for k, v in dataclasses.asdict(p.train.lora).items()}})
        for (m_, v_), m in metrics.items():
            name = candidate(m_, v_)
            mlflow.log_metrics({f"{name}.accuracy": m["accuracy"], f"{name}.macro_f1": m["macro_f1"]})
        mlflow.set_tags(tags)
        model, tokenizer = load_candidate(p, model_name, models_dir / best)
        model_dir = Path(tmp) / "model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        task_file = Path(tmp) / "task.json"
        task_file.write_text(json.dumps({"task": dataclasses.asdict(p.task), "batch_size": p.evaluate.batch_size}))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=PubMedQAClassifier(), artifacts={"model": str(model_dir),
                                                                          "task": str(task_file)},
            code_paths=[str(MEDAUG_SRC)], pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=p.register.model_name)
        run_id = run.info.run_id

    version = str(info.registered_model_version)
    for k, v in tags.items():
        client.set_model_version_tag(p.register.model_name, version, k, v)
    champ_version, champ_value = champion_score(client, p, digest, records)
    wins = champ_version is None or value > champ_value
    alias = "champion" if wins else "challenger"
    client.set_registered_model_alias(p.register.model_name, alias, version)
    result = {"model_name": p.register.model_name, "version": int(version), "alias": alias, "candidate": best,
              "metric": p.register.metric, "value": value, "previous_champion_version":
              int(champ_version) if champ_version else None, "previous_champion_value": champ_value,
              "run_id": run_id, "test_digest": digest}
    write_json(out_path, result)
    print(f"registered {p.register.model_name} v{version} ({best}, {p.register.metric}={value:.4f}) as @{alias}"
          + (f"; champion v{champ_version} had {champ_value:.4f}" if champ_version else ""))
    return result
