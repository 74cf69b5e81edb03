"""The end-to-end test project: the pipeline with tiny-llama as the student (four recipes, one of them also from a
continued-pretraining base) and the HTTP test server as an OpenAI-compatible teacher, built as a user runs it.

Every candidate costs a train and an evaluate process in the build and again in each experiment that retrains, so
each recipe proves what no other does: `original` the train split alone, `augmented` every kept item, `half` the
selection by strategy and a seeded fraction of it, `why` the rationale target on the same data as `original`; and
continued pretraining is asked for one recipe only, so the `pretrain.variants` filter is exercised too."""

from pathlib import Path

import yaml
from ruamel.yaml import YAML

from support.openai_server import OpenAIServer, pubmedqa_responder
from support.process import sh
from support.project import copy_project, git_repo, tiny

SENTINEL_KEY = "sk-medaug-SENTINEL-4f1d9c0b7e"
NAME = "medaug-pubmedqa"
RECIPES = {"original": {}, "augmented": {"strategies": ["rewrite", "new"]},
           "half": {"strategies": ["new"], "fraction": 0.5}, "why": {"rationale": 0.5}}
VARIANTS = list(RECIPES)
DAPT = ["augmented"]  # pretrain.variants: a dapt candidate for this recipe only


def per_variant(*patterns, variants=VARIANTS):
    """{pattern.format(v=variant)} for every variant, e.g. per_variant("train@tiny-{v}-0")."""
    return {p.format(v=v) for p in patterns for v in variants}


def build_pipeline(repo: Path) -> dict:
    """`dvc repro` of the project in a fresh git repo at `repo` (outputs left uncommitted, as after a user's first
    run): {"env": the user's environment, less the teacher's URL, "first": the run's stdout, "requests": how many
    requests the teacher saw, "first_log": its stderr, where the stages log}."""
    copy_project(repo)
    params = tiny(YAML(typ="safe", pure=True).load((repo / "params.yaml").read_text()), VARIANTS)
    params["variants"] = RECIPES
    params["pretrain"].update(models=["tiny"], variants=DAPT, max_steps=4, block_size=64)
    params["generate"]["per_strategy"] = 8
    params["task"]["max_seq_len"] = 256
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = git_repo(repo, repo.parent, SENTINEL_KEY)
    with OpenAIServer(pubmedqa_responder) as server:
        first = sh(["dvc", "repro"], repo, {**env, "OPENAI_BASE_URL": server.base_url})
        return {"env": env, "first": first.stdout, "first_log": first.stderr, "requests": len(server.requests)}
