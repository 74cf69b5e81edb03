"""Loading a model: a reference (see medaug.models) -> the model and tokenizer, on the device it scores on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from medaug.errors import MedaugError
from medaug.models import TRAINED, hub_id, resolve


def device() -> str:
    """Where a model scores: the GPU when there is one, in float32 (the evaluate stage and the registered model
    alike, so both give the same answers on one machine)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
