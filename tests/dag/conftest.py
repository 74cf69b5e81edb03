"""The DAG tier: tests that run `dvc repro` or `dvc exp run` in a fresh git repo, as a user does. Each test DAG is
built once per test run (support.dag.built) and every module works on its own clone of it, so the modules can run
in any order and on any pytest-xdist worker. Every test here is marked `dag` (tests/conftest.py)."""

import pytest

from support import forkserver
from support.dag import built, clone, run_root
from support.openai_server import OpenAIServer, pubmedqa_responder
from support.pipeline import build_pipeline


@pytest.fixture(scope="session")
def pipeline_build(tmp_path_factory):
    """The end-to-end project (support.pipeline) after its first `dvc repro`: never changed, only cloned."""
    return built(tmp_path_factory, "pipeline", build_pipeline)


@pytest.fixture(scope="module")
def project(pipeline_build, tmp_path_factory):
    """This module's clone of the built pipeline with the HTTP test teacher serving it: {repo, env, server, first
    (the first run's stdout), requests (what the teacher saw during it)}; its model stages run on this worker's
    fork server (the build's env names the building worker's)."""
    repo = clone(pipeline_build["repo"], tmp_path_factory.mktemp("project") / "repo")
    with OpenAIServer(pubmedqa_responder) as server:
        yield {**pipeline_build, "repo": repo, "server": server,
               "env": forkserver.env({**pipeline_build["env"], "OPENAI_BASE_URL": server.base_url},
                                     run_root(tmp_path_factory))}
