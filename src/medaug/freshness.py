"""Is the committed baseline fresh? `dvc.lock` must match the code and params it claims produced the committed
metrics: a reviewer diffing metrics across commits trusts exactly that.

Checked with `dvc status`, without running anything: a stage is stale when a code or params dependency changed,
a dependency is new, or its command changed. On a fresh clone every data output is absent (not pulled, not
built), so a dependency that the DAG itself builds is left to DVC; every other dependency (code, params, input
data in git) must match. An entry for a stage that dvc.yaml no longer declares (DVC keeps it when a matrix shrinks)
is an orphan: it describes nothing and is pruned (`medaug check-lock --prune`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from medaug.errors import MedaugError


def _outs(lock: dict) -> list[str]:
    return [o["path"].rstrip("/") for stage in lock.get("stages", {}).values() for o in stage.get("outs", [])]


def _produced(path: str, outs: list[str]) -> bool:
    """Built by the DAG: an output, inside one, or a folder of outputs (eval/ holds every eval/<candidate>)."""
    return any(path == o or path.startswith(o + "/") or o.startswith(path + "/") for o in outs)


def _dvc(root: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        raise MedaugError(f"dvc {' '.join(args)} failed in {root}: {r.stderr.strip().splitlines()[-1:] or r.stdout}")
    return r.stdout


def orphans(root: Path) -> list[str]:
    """The stages dvc.lock has an entry for that dvc.yaml no longer declares, in lock order."""
    lock = YAML(typ="safe", pure=True).load((Path(root) / "dvc.lock").read_text(encoding="utf-8")) or {}
    declared = set(_dvc(Path(root), "stage", "list", "--name-only").split())
    return [name for name in lock.get("stages", {}) if name not in declared]


def prune(root: Path) -> list[str]:
    """Remove the orphan entries from dvc.lock, written as DVC writes it; the names removed."""
    from dvc.utils.serialize import modify_yaml

    gone = orphans(root)
    if gone:
        with modify_yaml(Path(root) / "dvc.lock") as lock:
            for name in gone:
                del lock["stages"][name]
    return gone


def stale_stages(root: Path) -> dict[str, list[str]]:
    """{stage: [what changed, e.g. "src/medaug/llm: modified", "params.yaml teacher: modified"]} for every stage
    whose committed lock entry does not match the working tree's code and params."""
    root = Path(root)
    lock_path = root / "dvc.lock"
    if not lock_path.exists():
        raise MedaugError(f"{lock_path}: not found; run `dvc repro` and commit dvc.lock")
    outs = _outs(YAML(typ="safe", pure=True).load(lock_path.read_text(encoding="utf-8")) or {})
    stale: dict[str, list[str]] = {}
    for stage, changes in (json.loads(_dvc(root, "status", "--json") or "{}") or {}).items():
        why = []
        for change in changes:
            if change == "always changed":  # the `registry` check runs on every repro by design; its deps count
                continue
            if not isinstance(change, dict):  # "changed checksum"
                why.append(str(change))
                continue
            for kind, entries in change.items():
                if kind == "changed outs":
                    continue
                if kind != "changed deps":
                    why.append(kind)
                    continue
                for path, status in entries.items():
                    if isinstance(status, dict):  # a params file: {key: status}
                        why += [f"{path} {key}: {s}" for key, s in status.items()]
                    elif not _produced(path.rstrip("/"), outs):  # data the DAG builds: absent on a clone
                        why.append(f"{path}: {status}")
        if why:
            stale[stage] = why
    return stale
