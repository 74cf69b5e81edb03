"""Hub-ready outputs (issue 16, part 3): `medaug export` writes a folder that transformers/peft load in a process
where medaug cannot be imported, scoring as medaug's own loader does (tiny models, and a hub id served from a local
cache in the hub's own layout: the `hub` fixture). The train output's card and base: tests/unit/test_export.py."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medaug.cli import main
from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.export import export
from medaug.models.load import load_model_and_tokenizer
from support.hub import HUB_ID, train_candidate

pytestmark = pytest.mark.usefixtures("tiny_cache")

RECORD = Record(id="q", question="Did outcome 3 improve? It worsened.", contexts=["We followed 13 patients."],
                final_decision="no")
NO_MEDAUG = "import sys; sys.modules['medaug'] = None  # any import of medaug fails\n"


def logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("Abstract: we followed patients.\nQuestion: did it work?\nAnswer:", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits[0, -1]


def exported_logits(dest: Path, loader: str, tmp_path: Path) -> torch.Tensor:
    """logits() of the folder `dest` loaded by `loader` (peft's or transformers' Auto class) where medaug cannot be
    imported."""
    module = "peft" if "Peft" in loader else "transformers"
    out = no_medaug(f"""
import torch
from {module} import {loader}
from transformers import AutoTokenizer
model = {loader}.from_pretrained({str(dest)!r})
tok = AutoTokenizer.from_pretrained({str(dest)!r})
ids = tok("Abstract: we followed patients.\\nQuestion: did it work?\\nAnswer:", return_tensors="pt").input_ids
with torch.no_grad():
    print(model(ids).logits[0, -1].tolist())
""", tmp_path)
    return torch.tensor(json.loads(out))


def no_medaug(script: str, tmp_path: Path) -> str:
    """Run `script` in a fresh python where `import medaug` fails; its stdout."""
    done = subprocess.run([sys.executable, "-c", NO_MEDAUG + script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=""))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_an_adapter_on_a_hub_base_exports_as_an_adapter_peft_loads_without_medaug(tmp_path, hub):
    p, out = train_candidate(tmp_path, HUB_ID)
    (tmp_path / "reports" / "eval").mkdir(parents=True)  # the evaluate stage's report: the card's scores and n
    (tmp_path / "reports" / "eval" / "tiny-original-0.json").write_text(json.dumps(
        {"accuracy": 0.75, "macro_f1": 0.5, "n": 8, "ci95": {"method": "bca", "accuracy": {"low": 0.5, "high": 1.0},
                                                              "macro_f1": {"low": 0.25, "high": 0.8}}}))
    dest = export(p, "tiny-original-0", tmp_path / "export", root=tmp_path)
    assert not (dest / "model.safetensors").exists() and (dest / "adapter_model.safetensors").exists()
    card = (dest / "README.md").read_text()
    assert "| Accuracy | 0.7500 | [0.5000, 1.0000] |" in card and "AutoPeftModelForCausalLM" in card
    assert "Test split, 8 items; 95% CI: bca bootstrap." in card
    want = logits(*load_model_and_tokenizer(str(out)))
    assert torch.allclose(exported_logits(dest, "AutoPeftModelForCausalLM", tmp_path), want, atol=1e-5)
    # the card's own snippet, run as written (no medaug), answers as the evaluate stage's Scorer does
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace(repr("tiny-original-0"), repr(str(dest)))
    code = code.replace('context="..."', f"context={RECORD.contexts[0]!r}").replace(
        'question="..."', f"question={RECORD.question!r}")
    model, tok = load_model_and_tokenizer(str(out))
    assert no_medaug(code, tmp_path).strip() == Scorer(model, tok, p.task, 1).predict([RECORD],
                                                                                     progress=False)[0]["prediction"]


def test_a_candidate_on_a_local_base_exports_merged_in_the_dtype_asked(tmp_path, monkeypatch):
    p, out = train_candidate(tmp_path, "tiny-llama")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:  # through the CLI: no such candidate, exit 1, the trained ones listed
        main(["export", "tiny-augmented-0", str(tmp_path / "x")])
    assert e.value.code == 1
    dest = export(p, "tiny-original-0", tmp_path / "export", root=tmp_path)
    assert (dest / "model.safetensors").exists() and not (dest / "adapter_config.json").exists()
    assert "library_name: transformers" in (dest / "README.md").read_text()
    want = logits(*load_model_and_tokenizer(str(out)))
    assert torch.allclose(exported_logits(dest, "AutoModelForCausalLM", tmp_path), want, atol=1e-5)
    half = export(p, "tiny-original-0", tmp_path / "half", dtype="bfloat16", root=tmp_path)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (dest / "model.safetensors").stat().st_size
    with pytest.raises(MedaugError, match=r"export: .*export exists and is not an empty folder; name a new one"):
        export(p, "tiny-original-0", dest, root=tmp_path)
    with pytest.raises(MedaugError, match=r"no candidate 'tiny-augmented-0' .*trained: tiny-original-0"):
        export(p, "tiny-augmented-0", tmp_path / "y", root=tmp_path)
