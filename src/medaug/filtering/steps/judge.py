"""`judge`: the teacher rates each item on a rubric; items under `filter.judge.min_score` go
(filtering/llm_checks.py)."""

from medaug.filtering.llm_checks import judge
from medaug.filtering.steps.base import Step

STEP = Step("judge", judge)
