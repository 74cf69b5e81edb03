"""`medaug cache push` / `medaug cache pull` share the teacher cache through the project's DVC remote (issue 16,
part 6), with real git and DVC: clone A pushes its cache to a local-directory remote and commits the .dvc file;
clone B, a `git clone` of A with answers of its own, pulls it and keeps its own entries (shared answers win on a
clash). A pull that fails leaves B's cache byte-identical; a push with no remote names the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medaug.llm.cache import RequestCache
from support.cache import K

MEDAUG = Path(sys.executable).parent / "medaug"
CACHE = Path(".cache/teacher.sqlite")


def answer(text: str) -> dict[str, object]:
    return {"text": text, "input_tokens": 1, "output_tokens": 2}


def sh(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def medaug(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return sh([str(MEDAUG), *args], cwd, env, check=False)


def write_cache(repo: Path, entries: dict[str, str]) -> Path:
    """The repo's cache with these answers (key name -> text), written through RequestCache's public API."""
    rc = RequestCache(repo / CACHE)
    for name, text in entries.items():
        rc.put(K(name), answer(text), backend="openai", model="m")
    rc.close()
    return repo / CACHE


def read_cache(path: Path) -> dict[str, str]:
    rc = RequestCache(path)
    try:
        return {e.key: e.value["text"] for e in rc.iter_entries()}
    finally:
        rc.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", HOME=str(tmp_path / "home"))
    env.pop("MEDAUG_LOG_LEVEL", None)
    return env


def project(repo: Path, env: dict[str, str], remote: Path | None) -> Path:
    """A fresh git + DVC project: params.yaml naming the cache, the project's .gitignore rules for .cache/ and,
    if given, a local-directory default remote; committed."""
    repo.mkdir()
    sh(["git", "init", "-q"], repo, env)
    sh([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    (repo / "params.yaml").write_text(f"teacher: {{cache: {CACHE.as_posix()}}}\n")
    (repo / ".gitignore").write_text("/.cache/?*\n!/.cache/*.dvc\n")
    if remote is not None:
        sh([sys.executable, "-m", "dvc", "remote", "add", "-d", "shared", str(remote)], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    return repo


@pytest.fixture
def cache_clones(tmp_path: Path, env: dict[str, str]) -> dict[str, Path]:
    """A pushes {q1: a1, q2: a2} and commits the .dvc file; B is a clone of A with answers of its own:
    {q2: b2 (a clash), q3: b3 (only B has it)}."""
    remote = tmp_path / "dvc-remote"
    a = project(tmp_path / "a", env, remote)
    write_cache(a, {"q1": "a1", "q2": "a2"})
    r = medaug("cache", "push", cwd=a, env=env)
    assert r.returncode == 0, r.stderr
    dvcfile = CACHE.with_name(CACHE.name + ".dvc")
    assert f"git add {dvcfile}" in r.stderr and "git commit" in r.stderr
    assert sh(["git", "check-ignore", "-q", str(dvcfile)], a, env, check=False).returncode == 1  # committable
    assert sh(["git", "check-ignore", "-q", str(CACHE)], a, env, check=False).returncode == 0
    sh(["git", "add", str(dvcfile)], a, env)
    sh(["git", "commit", "-qm", "teacher cache"], a, env)
    b = tmp_path / "b"
    sh(["git", "clone", "-q", str(a), str(b)], tmp_path, env)
    assert (b / dvcfile).is_file() and not (b / CACHE).exists()
    write_cache(b, {"q2": "b2", "q3": "b3"})
    return {"a": a, "b": b, "remote": remote}


def test_pull_merges_the_shared_cache_with_local_answers(cache_clones, env):
    b = cache_clones["b"]
    r = medaug("cache", "pull", cwd=b, env=env)
    assert r.returncode == 0, r.stderr
    assert read_cache(b / CACHE) == {K("q1"): "a1", K("q2"): "a2", K("q3"): "b3"}  # A's answer wins the clash
    assert "2 shared entries" in r.stderr and "local entries added: 1," in r.stderr
    assert "clashes (the shared answer kept): 1," in r.stderr and "already shared as they are: 0" in r.stderr
    assert sorted(p.name for p in (b / ".cache").iterdir()) == ["teacher.sqlite", "teacher.sqlite.dvc"]


def test_pull_without_local_cache_fetches_the_shared_one(cache_clones, env):
    b = cache_clones["b"]
    for f in (b / ".cache").glob("teacher.sqlite*"):
        if f.suffix != ".dvc":
            f.unlink()
    r = medaug("cache", "pull", cwd=b, env=env)
    assert r.returncode == 0, r.stderr
    assert read_cache(b / CACHE) == {K("q1"): "a1", K("q2"): "a2"}


def test_failed_pull_leaves_the_local_cache_as_it_was(cache_clones, env):
    b = cache_clones["b"]
    shutil.rmtree(cache_clones["remote"])
    before = {p.name: p.read_bytes() for p in (b / ".cache").iterdir()}
    r = medaug("cache", "pull", cwd=b, env=env)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "dvc pull" in errors[0], r.stderr
    assert {p.name: p.read_bytes() for p in (b / ".cache").iterdir()} == before
    assert read_cache(b / CACHE) == {K("q2"): "b2", K("q3"): "b3"}


def test_pull_before_anyone_pushed_says_so(tmp_path, env):
    repo = project(tmp_path / "c", env, tmp_path / "remote")
    write_cache(repo, {"q1": "c1"})
    r = medaug("cache", "pull", cwd=repo, env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "git pull" in r.stderr and len(r.stderr.splitlines()) == 1


def test_push_without_a_default_remote_names_the_fix(tmp_path, env):
    repo = project(tmp_path / "c", env, remote=None)
    write_cache(repo, {"q1": "c1"})
    r = medaug("cache", "push", cwd=repo, env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "dvc remote add -d" in r.stderr, r.stderr

