"""MLflow setup (the project's store), lineage tags of a run, and logging a stage's run; the registry policy is
tracking/register.py, the check that the registry still holds what was registered tracking/registry.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


from medaug.paths import project_root

EXPERIMENT = "medaug"
DVC_EXPERIMENT_TAGS = {"dvc_exp_name": "DVC_EXP_NAME", "dvc_exp_baseline_rev": "DVC_EXP_BASELINE_REV"}
"""Tag -> the variable `dvc exp run` (workspace, --temp, --queue) exports to each stage; absent under `dvc repro`."""


def store_uris(root: Path) -> tuple[str, str]:
    """(tracking URI, registry URI): MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI, else the sqlite store of the
    project that owns `root` (paths.project_root)."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(project_root(root) / 'mlflow.db').resolve()}"
    return tracking, os.environ.get("MLFLOW_REGISTRY_URI") or tracking


def setup_mlflow(root: Path) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else a sqlite store in the project (the file store is refused). The
    project is the one that owns `root` (paths.project_root): a temp or queued experiment registers into it, not
    into its throw-away copy."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    root = project_root(root)
    user = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    uri, registry = store_uris(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
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


def git(workspace: Path, *args: str) -> str:
    """`git <args>` in `workspace`, "" outside a git repository (or without git)."""
    try:
        return subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""


def dirty(workspace: Path) -> bool:
    """The commit does not describe the workspace: a tracked file changed, or dvc.lock is not in git yet (a
    project's first run, before its lock is committed). Untracked outputs alone are no change: DVC ignores its
    cached ones, and the rest (reports, metrics) change only with dvc.lock."""
    return bool(git(workspace, "status", "--porcelain", "--untracked-files=no")) or (
        (Path(workspace) / "dvc.lock").exists() and not git(workspace, "ls-files", "dvc.lock"))


def run_tags(workspace: Path) -> dict[str, str]:
    """What produced a run: the git commit and dirty flag of the workspace DVC ran the stage in (a temp
    experiment's copy is checked out at its baseline, its params changed), under `dvc exp run` the experiment's
    name and baseline rev, and `medaug.group`, the same for every stage of one `dvc repro` or experiment: the
    experiment's name, else the commit and the params.yaml it ran (its sha256), so a search for one group finds
    the runs of that pipeline run and no other's."""
    commit = git(workspace, "rev-parse", "HEAD")
    tags = {"git_commit": commit or "unknown", "git_dirty": str(bool(commit) and dirty(workspace)).lower()}
    tags.update({tag: os.environ[var] for tag, var in DVC_EXPERIMENT_TAGS.items() if os.environ.get(var)})
    params = Path(workspace) / "params.yaml"
    digest = hashlib.sha256(params.read_bytes()).hexdigest()[:12] if params.exists() else "none"
    tags["medaug.group"] = tags.get("dvc_exp_name") or f"{tags['git_commit'][:12]}+params-{digest}"
    return tags


def dvc_hashes(workspace: Path) -> dict[str, str]:
    """{output path: its DVC md5} of every stage output in the workspace's dvc.lock (a directory's ends in .dir).
    A stage reading another's output finds it here: DVC writes the lock after each stage it runs."""
    lock_path = Path(workspace) / "dvc.lock"
    # ruamel's C loader (ruamel.yaml.clib, which DVC reads the lock with too): 0.05 s for the default run's 56 kB
    # lock, against 0.20 s pure-Python, and every stage that logs a run reads it
    lock = YAML(typ="safe").load(lock_path.read_text()) if lock_path.exists() else {}
    return {out["path"]: out.get("md5", "") for stage in (lock or {}).get("stages", {}).values()
            for out in stage.get("outs", [])}


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


PIPELINE_TAG = "medaug.pipeline"
"""Set ("true") on the run of one `dvc repro` or experiment: its `medaug.group`'s parent of every stage run."""


def process_started() -> float:
    """When this process started (seconds since the epoch): a stage's run spans the stage, imports included."""
    import psutil

    return psutil.Process().create_time()


def stage_run(root: Path, stage: str, run_name: str | None = None) -> str:
    """Create the MLflow run of `stage` (run name and tag `medaug.stage`, run_tags), started when the stage's process
    did, nested under the run of its
    group's pipeline, which the group's first stage creates and every stage's end extends: `mlflow ui` shows one
    `dvc repro` or experiment as one run with its stages inside. Returns the run id; `mlflow.start_run(run_id=...)`
    logs into it and ends it."""
    setup_mlflow(root)
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = mlflow.MlflowClient()
    start_ms = int(process_started() * 1000)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    tags = run_tags(Path(root))
    found = client.search_runs([experiment], f"tags.`medaug.group` = '{tags['medaug.group']}' and "
                                             f"tags.`{PIPELINE_TAG}` = 'true'", max_results=1)
    if found:
        parent = found[0].info.run_id
    else:
        parent = client.create_run(experiment, start_time=start_ms, run_name=f"pipeline {tags['medaug.group']}",
                                   tags={**tags, PIPELINE_TAG: "true"}).info.run_id
    client.set_terminated(parent, end_time=None)  # ends now: it spans its stages so far
    return client.create_run(experiment, start_time=start_ms, run_name=run_name or stage,
                             tags={**tags, "medaug.stage": stage, MLFLOW_PARENT_RUN_ID: parent}).info.run_id


def log_stage(root: Path, stage: str, params: dict[str, Any], metrics: dict[str, Any],
              curves: list[dict[str, Any]] = (), inputs: dict[str, str] | None = None) -> str:
    """One MLflow run for a stage (e.g. generate: its params, and its requests, tokens and cost; train: also
    every point of its curves, rows {step, name: value, ...}, at its step), from the stage's start to now, nested
    in its pipeline's run (`stage_run`); returns the run id. Only numeric metrics are logged; params are the
    stage's params.yaml sections, which hold no secret (keys live in the environment). `root`: the workspace the
    stage runs in (its git commit is the run's; MLflow's store is the project's, see setup_mlflow). `inputs`:
    {context: a path it read, relative to `root`, e.g. "test": "data/prepared/test.jsonl"}, logged as MLflow
    dataset inputs named by the path, with the DVC md5 (dvc.lock) of the output holding it as the digest: the run
    says exactly which data it saw, and DVC can fetch that version."""
    import time

    run_id = stage_run(root, stage)
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, int(row["step"])) for row in curves for k, v in row.items()
              if k != "step" and _number(v)]
    with mlflow.start_run(run_id=run_id) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})
        mlflow.log_metrics({k: float(v) for k, v in flatten(metrics).items() if _number(v)})
        if inputs:
            from mlflow.data.dataset_source_registry import resolve_dataset_source
            from mlflow.data.meta_dataset import MetaDataset

            md5 = dvc_hashes(Path(root))
            for context, path in inputs.items():
                # a file inside an output directory (data/prepared/test.jsonl) has that directory's version
                digest = next((md5[str(q)] for q in (Path(path), *Path(path).parents) if md5.get(str(q))), None)
                source = resolve_dataset_source((Path(root) / path).resolve().as_uri())  # a local file source
                mlflow.log_input(MetaDataset(source, name=str(path), digest=digest), context=context)
        client = mlflow.MlflowClient()
        for i in range(0, len(points), 1000):  # MLflow's limit per batch
            client.log_batch(run.info.run_id, metrics=points[i:i + 1000])
    return run.info.run_id
