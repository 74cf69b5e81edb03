"""`consistency`: the teacher answers each item blind; items where it disagrees with the label go
(filtering/llm_checks.py)."""

from medaug.filtering.llm_checks import consistency
from medaug.filtering.steps.base import Step

STEP = Step("consistency", consistency)
