"""Hub-ready outputs (issue 16, part 3): a train output carries a model card and names its base by hub id and
revision, not by this machine's cache path (a tiny model, and a hub id served from a local cache in the hub's own
layout: the `hub` fixture). `medaug export` loaded in a process without medaug: tests/integration/test_export.py."""

import json

import pytest

from support.hub import COMMIT, HUB_ID, train_candidate

pytestmark = pytest.mark.usefixtures("tiny_cache")


def test_a_train_output_names_its_hub_base_with_revision_and_carries_a_card(tmp_path, hub):
    p, out = train_candidate(tmp_path, HUB_ID)
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == (HUB_ID, COMMIT)
    assert json.loads((out / "medaug.json").read_text())["base_revision"] == COMMIT
    assert str(hub) not in (out / "adapter_config.json").read_text()  # no path of this machine
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and f"base_model: {HUB_ID}" in card and "library_name: peft" in card
    assert "## Training" in card and "- learning_rate: " in card and "## Evaluation" not in card  # not scored yet
