"""`medmcqa`: MedMCQA (openlifescienceai/medmcqa), 4 options, its named splits (rows: data/mcq.py)."""

from medaug.data.loaders.base import GivenSplits
from medaug.data.mcq import from_medmcqa_rows

LOADER = GivenSplits("medmcqa", from_medmcqa_rows)
