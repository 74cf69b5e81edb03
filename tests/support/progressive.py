"""Params for the progressive task (chains of questions on one case) on its bundled synthetic cases."""

from medaug.params import parse_params
from support.paths import ROOT

PROGRESSIVE = "src/medaug/tasks/progressive.yaml"


def params(**generate):
    return parse_params({"task": {"file": PROGRESSIVE}, "generate": {"strategies": ["progressive"], **generate},
                         "filter": {"steps": ["validate", "dedup", "decontaminate"]},
                         "train": {"variants": ["original"]}}, ROOT)
