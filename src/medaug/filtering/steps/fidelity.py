"""`fidelity`: the teacher compares each rewrite with its parent's question, blind to the label; a rewrite that asks
something else goes (filtering/llm_checks.py)."""

from medaug.filtering.llm_checks import fidelity
from medaug.filtering.steps.base import Step

STEP = Step("fidelity", fidelity)
