"""Params for an exam (multiple-choice) task on the bundled MedQA-schema sample, with the HTTP test teacher."""

from medaug.params import Params, parse_params
from support.paths import ROOT

MEDQA = "src/medaug/tasks/medqa.yaml"
MEDQA_SAMPLE = "src/medaug/data/sample/medqa"  # its data.source: the bundled MedQA-schema rows
STEPS = ["validate", "dedup", "decontaminate", "judge", "consistency", "balance"]


def exam(generate=None, filter_=None) -> Params:
    return parse_params({
        "data": {"source": MEDQA_SAMPLE},
        "task": {"file": MEDQA},
        "teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5, "max_attempts": 2,
                    "backoff_s": 0.01, "max_concurrency": 4},
        "generate": {"strategies": ["rewrite", "new"], "per_strategy": 24, "seed": 0,
                     "mesh": {"descriptors": ""}, **(generate or {})},  # the stages run under tmp_path: no tree file
        "filter": {"steps": STEPS, **(filter_ or {})},
        "train": {"variants": ["original", "augmented"]}}, ROOT)
