"""The filter steps, one module each (see base.Step), listed once here; `filter.steps` picks and orders them.
Adding a step is a module here and its name in the import line below, which is the list (every module it imports
that holds a `STEP`), and, for knobs, its section of params.yaml `filter`.

params.py does not import this package, for the reason augment/strategies/ gives: `check` validates the names; the
filter stage runs it before any step, and `medaug check-params` runs it too.
"""

from __future__ import annotations

from medaug.errors import MedaugError
from medaug.filtering.steps import balance, consistency, decontaminate, dedup, fidelity, judge, validate  # noqa: F401
from medaug.filtering.steps.base import Context, Step
from medaug.params import Params, untraced

STEPS: dict[str, Step] = {m.STEP.name: m.STEP for m in list(globals().values())
                          if isinstance(getattr(m, "STEP", None), Step)}

__all__ = ["STEPS", "Context", "Step", "check"]


def check(p: Params) -> None:
    """Every name in `filter.steps` is one of STEPS; the error names the key and the known steps."""
    with untraced():  # a check decides no output
        for i, name in enumerate(p.filter.steps):
            if name not in STEPS:
                raise MedaugError(f"params.yaml: filter.steps[{i}] = {name!r} is no filter step (known: "
                                  f"{', '.join(STEPS)})")
