"""A trained candidate as a folder that transformers and peft load without medaug: `medaug export` and the
registered model.

- `export`: a LoRA adapter on a base the hub holds (gemma-3-270m: google/gemma-3-270m) stays an adapter, its
  `adapter_config.json` naming that base by hub id (and revision), so `AutoPeftModelForCausalLM` loads it; any
  other candidate (a tiny or local base, a continued-pretraining adapter under it, `merge=True`) is written as
  the merged model, loadable by `AutoModelForCausalLM` (in `dtype`). With a README.md model card (models/card.py).
- `bundle`: the candidate as the registered MLflow model carries it: the adapter, and a copy of any base no
  reference can fetch on another machine (a local directory, a continued-pretraining adapter), so serving loads
  exactly what the evaluate stage scored (same loader, same merge, float32) from the adapter and tokenizer (41 MB
  for Gemma) instead of the 1.1 GB merged weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from medaug.data.jsonl import read_json, temp_dir_beside
from medaug.errors import MedaugError
from medaug.models import TRAINED, hub_id
from medaug.models.card import model_card, prepared_source
from medaug.params import Params
from medaug.paths import DATASETS, MODELS, REPORTS, Candidate

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The medaug.json of a trained candidate, or an error naming the folder and the fix."""
    try:
        return json.loads((Path(model_dir) / TRAINED).read_text())
    except (OSError, ValueError):
        raise MedaugError(f"{model_dir}: not a trained medaug model ({TRAINED} missing or unreadable); run "
                          f"`dvc repro` to train it, or name a folder under {MODELS}/") from None


def _is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def bundle(model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Copy the candidate in `model_dir` into `out_dir` (new), with its base copied into `out_dir`/base (recursively:
    a continued-pretraining adapter brings its own base) when the base is a folder on this machine, not a
    built-in model or a hub id; medaug.json then says `base_dir`. Returns the copy's medaug.json."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = read_meta(model_dir) if _is_adapter(model_dir) else {}
    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns("checkpoint-*", ".*"))
    base = meta.get("base")
    if base and Path(base).expanduser().is_dir():  # a local folder: it travels with the model
        base_path = Path(base).expanduser()
        if _is_adapter(base_path):
            bundle(base_path, out_dir / "base")
        else:
            shutil.copytree(base_path, out_dir / "base")
        meta["base_dir"] = "base"
        (out_dir / TRAINED).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def card(p: Params, name: str, meta: dict[str, Any], adapter: bool, root: Path) -> str:
    """The README.md of candidate `name` as shipped (an export, the registered model): medaug.json's `meta`, plus
    from the project's outputs at `root` the dev scores (reports/train), the test scores, n and CIs (reports/eval) and,
    when the recipe has generated items, its data card (reports/dataset/<recipe>.md, of its own items; a round
    candidate's: reports/dataset/<candidate>.md). Missing files
    are left out."""
    def json_or_none(path: Path) -> dict[str, Any] | None:
        return read_json(path) if path.exists() else None

    c = Candidate(str(meta.get("model", "")), str(meta.get("variant", "")), meta.get("seed"))
    generated = bool(c.recipe in p.variants and p.variants[c.recipe].strategies)
    datacard = root / DATASETS / f"{name if c.round else c.recipe}.md"  # a round candidate: its own card
    return model_card(name=name, meta=meta, task=p.task, source=prepared_source(root), adapter=adapter,
                      train_metrics=json_or_none(root / REPORTS / "train" / f"{name}.json"),
                      test_metrics=json_or_none(root / REPORTS / "eval" / f"{name}.json"),
                      datacard=datacard.read_text(encoding="utf-8") if generated and datacard.exists() else None)


def _adapter_on_hub(meta: dict[str, Any]) -> bool:
    return bool(meta.get("method", "lora") == "lora" and hub_id(str(meta.get("base", ""))))


def export(p: Params, name: str, out_dir: Path, merge: bool = False, dtype: str = "float32",
           root: Path | None = None) -> Path:
    """Write candidate `name` (models/<name>) into `out_dir` (new or empty) for transformers/peft without medaug;
    returns `out_dir`. The folder appears whole or not at all."""
    import torch

    from medaug.models.load import load_model_and_tokenizer

    root = Path.cwd() if root is None else Path(root)
    model_dir = root / MODELS / name
    if not model_dir.is_dir():
        known = sorted(d.name for d in (root / MODELS).iterdir() if (d / TRAINED).exists()) \
            if (root / MODELS).is_dir() else []
        raise MedaugError(f"export: no candidate {name!r} ({model_dir} missing; trained: "
                          f"{', '.join(known) or 'none, run `dvc repro`'})")
    if dtype not in DTYPES:
        raise MedaugError(f"export: --dtype {dtype!r} (allowed: {', '.join(DTYPES)})")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MedaugError(f"export: {out_dir} exists and is not an empty folder; name a new one")
    meta = read_meta(model_dir)
    adapter = _is_adapter(model_dir) and _adapter_on_hub(meta) and not merge
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(out_dir)
    try:
        if adapter:  # adapter_config.json names the base by hub id and revision already (train writes it so)
            for f in model_dir.iterdir():
                if f.is_file() and f.name != "README.md":
                    shutil.copy2(f, tmp / f.name)
        else:
            model, tokenizer = load_model_and_tokenizer(str(model_dir))
            model.to(getattr(torch, dtype)).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card(p, name, meta, adapter, root), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"exported {name} to {out_dir} as "
             + (f"a LoRA adapter on {hub_id(meta['base'])}" if adapter else f"a merged model ({dtype})"))
    return out_dir

