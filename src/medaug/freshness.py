"""Is the committed baseline fresh? `dvc.lock` must match the code and params it claims produced the committed
metrics: a reviewer diffing metrics across commits trusts exactly that.

Checked with `dvc status`, without running anything: a stage is stale when a code or params dependency changed,
a dependency is new, or its command changed. On a fresh clone every data output is absent (not pulled, not
built), so a dependency that the DAG itself builds is left to DVC; every other dependency (code, params, input
data in git) must match.
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


def stale_stages(root: Path) -> dict[str, list[str]]:
    """{stage: [what changed, e.g. "src/medaug/llm: modified", "params.yaml teacher: modified"]} for every stage
    whose committed lock entry does not match the working tree's code and params."""
    root = Path(root)
    lock_path = root / "dvc.lock"
    if not lock_path.exists():
        raise MedaugError(f"{lock_path}: not found; run `dvc repro` and commit dvc.lock")
    outs = _outs(YAML(typ="safe", pure=True).load(lock_path.read_text(encoding="utf-8")) or {})
    r = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        raise MedaugError(f"dvc status failed in {root}: {r.stderr.strip().splitlines()[-1:] or r.stdout}")
    stale: dict[str, list[str]] = {}
    for stage, changes in (json.loads(r.stdout or "{}") or {}).items():
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
