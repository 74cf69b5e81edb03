"""`progressive`: progressive cases (medaug's schema, MQG/ECN-QA style): a chain of exam questions per case (rows: data/mcq.py)."""

from pathlib import Path

from medaug.data.loaders.base import GivenSplits
from medaug.data.mcq import from_progressive_rows

LOADER = GivenSplits("progressive", Path(__file__).parents[1] / "sample" / "progressive", from_progressive_rows)
