"""`medqa`: MedQA (GBaker/MedQA-USMLE-4-options), 4 options, its named splits (rows: data/mcq.py)."""

from medaug.data.loaders.base import GivenSplits
from medaug.data.mcq import from_medqa_rows

LOADER = GivenSplits("medqa", from_medqa_rows)
