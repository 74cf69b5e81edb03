"""A DAG built once per test run and handed to tests as cheap copies.

A test DAG costs minutes (every stage is a fresh process importing torch), so `built()` runs `dvc repro` once per
test run, under a file lock in the run's shared temp folder: with pytest-xdist, the first worker that needs it
builds it and the others wait for it, then each test module works on its own `clone()`. A clone is the whole
project folder (git, the DVC cache, the MLflow store, the teacher cache) copied, its MLflow store's artifact paths
moved with it: what a user gets by copying their project folder, so a clone's `dvc repro` reruns nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml
from filelock import FileLock
from ruamel.yaml import YAML

from support.openai_server import ExamTeacher, OpenAIServer
from support.process import sh
from support.project import copy_project, git_repo, tiny


def run_root(tmp_path_factory) -> Path:
    """The temp folder every xdist worker of this run shares (the run's base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> dict:
    """`build(folder)` once per test run (it builds the project in `folder` and returns what tests need to know of
    that run, as JSON), under a lock; every later caller, in any worker, gets {"repo": folder, **that}. The folder
    is never changed after the build: tests work on clones."""
    root = run_root(tmp_path_factory)
    repo, done = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if repo.exists():  # a build that failed half-way in this run: start over
                shutil.rmtree(repo)
            repo.mkdir()
            done.write_text(json.dumps(build(repo)))
    return {"repo": repo, **json.loads(done.read_text())}


def clone(src: Path, dst: Path) -> Path:
    """A copy of the built project `src` at `dst`, self-contained: the MLflow store's artifact locations (absolute
    file URIs and paths into `src`) point into `dst`."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".nfs*", "__pycache__"))
    db = dst / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for _, column, kind, *_ in conn.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if "CHAR" in kind.upper() or "TEXT" in kind.upper():
                        for old, new in ((src.resolve().as_uri(), dst.resolve().as_uri()),
                                         (str(src.resolve()), str(dst.resolve()))):
                            conn.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                         f'WHERE "{column}" LIKE ?', (old, new, f"%{old}%"))
    return dst


def commit(repo: Path, env: dict[str, str], message: str) -> str:
    """Commit everything in `repo` (outputs included, as a user commits a run); the new HEAD."""
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", message], repo, env)
    return sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()


def task_dag(tmp_path_factory, name: str, edit: Callable[[dict], None], responder: Callable[[str], str] | None = None,
             setup: Callable[[Path], None] | None = None, variants: tuple[str, ...] = ("original", "augmented")
             ) -> Iterator[dict]:
    """`dvc repro` of the project in a fresh git repo, with tiny-llama trained on `variants` a few steps and
    `responder` (default ExamTeacher) on the HTTP test server as the teacher, after `edit(params)` and
    `setup(repo)` (files the task needs, committed with the project); yields {repo, env, first}."""
    repo = copy_project(tmp_path_factory.mktemp(name))
    params = tiny(YAML(typ="safe", pure=True).load((repo / "params.yaml").read_text()), list(variants))
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if setup is not None:
        setup(repo)
    env = git_repo(repo, run_root(tmp_path_factory), f"sk-test-{name}")
    with OpenAIServer(responder or ExamTeacher()) as server:
        env["OPENAI_BASE_URL"] = server.base_url
        yield {"repo": repo, "env": env, "first": sh(["dvc", "repro"], repo, env)}
