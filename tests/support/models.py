"""Tiny-model helpers several test files use: a LoRA adapter that really changes its base, and a minimal chat
template for tokenizers that ship none."""

import json
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def lora_adapter(model_ref, path):
    """A LoRA adapter with random (not zero) B matrices, so merging it really changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model

    from medaug.models.load import load_model_and_tokenizer

    torch.manual_seed(1)
    model, tokenizer = load_model_and_tokenizer(model_ref)
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False,
                        task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (Path(path) / "medaug.json").write_text(json.dumps({"base": model_ref}))  # as the train stage writes it
    return path
