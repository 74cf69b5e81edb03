"""MLflow setup, lineage tags and the registry policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EXPERIMENT = "medaug"


def setup_mlflow(root: Path) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else a sqlite store in the project (the file store is refused)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    user = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    uri = user["MLFLOW_TRACKING_URI"] or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(user["MLFLOW_REGISTRY_URI"] or uri)
    # set_*_uri also export the URI to os.environ (for child processes); put back the user's setting, or a later
    # call in this process (another project root: tests, a notebook) would read this one as if the user had set it.
    for key, value in user.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = os.environ.get("MEDAUG_ARTIFACT_ROOT") or (
            (root / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None)
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return uri


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, as `dvc metrics diff` shows nested metrics."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def log_stage(root: Path, stage: str, params: dict[str, Any], metrics: dict[str, Any],
              curves: list[dict[str, Any]] = ()) -> str:
    """One MLflow run for a stage (e.g. generate: its params, and its requests, tokens and cost; train: also
    every point of its curves, rows {step, name: value, ...}, at its step); returns the run id. Only numeric
    metrics are logged; params are the stage's params.yaml sections, which hold no secret (keys live in the
    environment)."""
    setup_mlflow(root)
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, int(row["step"])) for row in curves for k, v in row.items()
              if k != "step" and _number(v)]
    with mlflow.start_run(run_name=stage, tags={"medaug.stage": stage}) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})
        mlflow.log_metrics({k: float(v) for k, v in flatten(metrics).items() if _number(v)})
        client = mlflow.MlflowClient()
        for i in range(0, len(points), 1000):  # MLflow's limit per batch
            client.log_batch(run.info.run_id, metrics=points[i:i + 1000])
    return run.info.run_id
