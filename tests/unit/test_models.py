"""Model resolver: tiny test models (cached). Built the same in another process, and the packaged Gemma-3-270M
converted and answering: tests/integration/test_models.py."""

from pathlib import Path

import pytest
import torch

from medaug.errors import MedaugError
from medaug.models.load import load_model_and_tokenizer
from medaug.models import resolve



pytestmark = pytest.mark.usefixtures("tiny_cache")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_model_loads_from_cache(name):
    path = resolve(name)
    stamp = (Path(path) / "model.safetensors").stat().st_mtime_ns
    model, tokenizer = load_model_and_tokenizer(name)
    assert resolve(name) == path and (Path(path) / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    for word in (" yes", " no", " maybe"):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1
    assert tokenizer.pad_token is not None
    text = "Does aspirin reduce the risk of stroke? Answer:"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    ids = torch.tensor([tokenizer(text).input_ids])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_local_directory_is_a_model(tmp_path):
    model, tokenizer = load_model_and_tokenizer("tiny-llama")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert resolve(str(tmp_path / "m")) == str(tmp_path / "m")
    again, _ = load_model_and_tokenizer(str(tmp_path / "m"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_missing_models_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(MedaugError, match="no such directory"):
        resolve(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedaugError, match="no config.json"):
        load_model_and_tokenizer(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MedaugError, match="HF_HUB_OFFLINE"):
        load_model_and_tokenizer("medaug-test/no-such-model")
