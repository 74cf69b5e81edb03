"""MLflow setup, lineage tags and the registry policy."""

from __future__ import annotations

import os
from pathlib import Path

EXPERIMENT = "medaug"


def setup_mlflow(root: Path) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else a sqlite store in the project (the file store is refused)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = os.environ.get("MEDAUG_ARTIFACT_ROOT") or (
            (root / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None)
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return uri
