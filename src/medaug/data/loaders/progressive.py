"""`progressive`: progressive cases (medaug's schema, MQG/ECN-QA style): a chain of exam questions per case (rows: data/mcq.py)."""

from medaug.data.loaders.base import GivenSplits
from medaug.data.mcq import from_progressive_rows

LOADER = GivenSplits("progressive", from_progressive_rows)
