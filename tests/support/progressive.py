"""Params for the progressive task (chains of questions on one case) on its bundled synthetic cases."""

from medaug.params import parse_params
from support.paths import ROOT

PROGRESSIVE = "src/medaug/tasks/progressive.yaml"
PROGRESSIVE_SAMPLE = "src/medaug/data/sample/progressive"  # its data.source: the bundled cases


def params(**generate):
    return parse_params({"data": {"source": PROGRESSIVE_SAMPLE}, "task": {"file": PROGRESSIVE}, "generate": {"strategies": ["progressive"], **generate},
                         "filter": {"steps": ["validate", "dedup", "decontaminate"]},
                         "train": {"variants": ["original"]}}, ROOT)
