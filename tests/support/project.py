"""A copy of the project's pipeline in a fresh git repo, set up for a test DAG (tiny models, the HTTP test teacher),
and the champion's predictions next to its evaluate stage's."""

import json
import os
import shutil
import sys
from pathlib import Path

from support import forkserver
from support.paths import ROOT
from support.process import sh

COPY = ["dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvc/plots", ".dvcignore",
        "data/.gitignore", ".gitignore"]  # .dvc/plots: the templates, and page.html as `make setup` writes it


def copy_project(repo: Path, lock: bool = False) -> Path:
    """The project's tracked pipeline files (COPY) in `repo`, as a clone has them; dvc.lock too when `lock`. A test
    DAG starts without it: its stages (tiny models) are not the committed lock's, and DVC rewrites the whole lock
    after every stage it runs, so the committed entries would only make each stage of the test slower."""
    for rel in COPY + ["dvc.lock"] * lock:
        src, dst = ROOT / rel, repo / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return repo


def tiny(params: dict, variants: list[str], max_steps: int = 6) -> dict:
    """params.yaml's content set for a test DAG: tiny-llama trained `max_steps` steps on `variants`, no continued
    pretraining, and the teacher an OpenAI-compatible endpoint (the HTTP test server)."""
    params["models"] = {"tiny": "tiny-llama"}
    params["train"].update(models=["tiny"], variants=variants, max_steps=max_steps, batch_size=4, grad_accum=1,
                           learning_rate=0.01)
    params["pretrain"]["models"] = []
    params["teacher"].update(backend="openai", model="fake-teacher", max_concurrency=4, timeout_s=10)
    return params


def git_repo(repo: Path, base: Path, key: str) -> dict[str, str]:
    """Commit `repo` as a fresh git repo; the environment a user's shell would have for it (venv on PATH, the
    teacher key, the per-session tiny-model cache, no MLflow URI: the project's own store), with the worker's fork
    server for the model stages (support.forkserver)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OPENAI_API_KEY=key, MEDAUG_CACHE=str(base / "medaug-cache"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    return forkserver.env(env, base)


def champion_vs_evaluate(repo: Path, env: dict[str, str], name: str,
                         fields: tuple[str, ...] = ("id", "question", "contexts")) -> tuple[dict, dict]:
    """({id: prediction} of `medaug predict` with models:/<name>@champion in a fresh process, on the test split's
    `fields`; {id: prediction} of the evaluate stage for the candidate register.json names)."""
    reg = json.loads((repo / "reports/register.json").read_text())
    test = [json.loads(x) for x in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    inp, out = repo / "predict_in.jsonl", repo / "predict_out.jsonl"
    inp.write_text("".join(json.dumps({k: r[k] for k in fields}) + "\n" for r in test))
    sh(["medaug", "predict", "--model", f"models:/{name}@champion", "--input", str(inp), "--output", str(out)],
       repo, env)
    got = {o["id"]: o["prediction"] for o in map(json.loads, out.read_text().splitlines())}
    want = {p["id"]: p["prediction"] for p in
            map(json.loads, (repo / f"eval/{reg['candidate']}/predictions.jsonl").read_text().splitlines())}
    inp.unlink()
    out.unlink()
    return got, want
