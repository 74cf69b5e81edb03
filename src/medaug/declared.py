"""Params read = params declared (issue 31). Under `MEDAUG_CHECK_PARAMS` (params.CHECK_READS) a stage records
every params key it reads; at the stage script's end (`errors.guarded`) `check` compares them with the stage's
dvc.yaml entry as DVC resolves it (matrix items filled in) and fails on a key the entry does not declare, naming
it and the line to add. When the variable names a folder, each stage also writes <folder>/<stage>.json: what it
read and what it declares, for the tests that hold the two equal."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from medaug import params
from medaug.errors import MedaugError


CACHE = Path(".dvc/tmp/medaug-declared.json")
"""Every stage's declaration, computed once per dvc.yaml and params.yaml (their sha256 is the key): asking DVC
costs about a second, and a `dvc repro` runs dozens of stages."""


def declared(root: Path, stage: str) -> tuple[list[str], set[str]]:
    """(params keys, dependency paths) of `stage`, from DVC's own reading of dvc.yaml; a `${key}` in the stage's
    command counts as declared (a changed command reruns the stage: `${train.launcher}`)."""
    root = Path(root)
    key = hashlib.sha256(b"".join((root / name).read_bytes() for name in ("dvc.yaml", "params.yaml"))).hexdigest()
    cache = root / CACHE
    try:
        stages = json.loads(cache.read_text())
        if stages.get("key") != key:
            raise ValueError
    except (OSError, ValueError):
        stages = {"key": key, "stages": all_declared(root)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # stages may run in parallel (dvc queue workers)
        tmp.write_text(json.dumps(stages))
        tmp.replace(cache)
    keys, paths = stages["stages"][stage]
    return keys, set(paths)


def all_declared(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """{stage: (params keys, dependency paths)} of every stage in dvc.yaml (see `declared`)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    commands = {name: str(entry.get("cmd", "")) for name, entry in
                params.read_yaml(root / "dvc.yaml")["stages"].items()}
    out = {}
    with Repo(str(root)) as repo:
        for st in repo.index.stages:
            keys = [k for d in st.deps if isinstance(d, ParamsDependency) for k in d.params]
            cmd = commands.get(st.addressing.split("@")[0], "")
            out[st.addressing] = (keys + re.findall(r"\$\{((?!item\.)[\w.]+)\}", cmd),
                                  sorted(str(d.def_path) for d in st.deps if not isinstance(d, ParamsDependency)))
    return out


def covered(key: str, keys: list[str], paths: set[str], task_file: str) -> bool:
    """A read key is declared by itself or a section above it; a task file's keys (and `task.file`, its name) by
    the file as a dependency."""
    if any(key == k or key.startswith(k + ".") for k in keys):
        return True
    section, _, rest = key.partition(".")
    return (section == "task" and rest.split(".")[0] in (*params.TASK_FILE_KEYS, "file")
            and task_file in paths)


def check(root: Path = Path()) -> None:
    read, stage = params.reads(), os.environ.get("DVC_STAGE")
    if read is None or not stage:
        return
    keys, paths = declared(root, stage)
    task_file = params.task_file()
    missing = sorted(k for k in read if not covered(k, keys, paths, task_file))
    folder = os.environ.get(params.CHECK_READS, "")
    if folder not in ("", "1"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{stage}.json").write_text(json.dumps(
            {"read": sorted(read), "declared": keys, "task_file_dep": task_file in paths, "undeclared": missing},
            indent=1))
    if missing:
        raise MedaugError(f"dvc.yaml: stage {stage} reads params it does not declare: {', '.join(missing)}; add "
                          f"each under the stage's `params:` (e.g. `- {missing[0]}`), or, when it decides no "
                          f"output, read it under `params.untraced()`")
