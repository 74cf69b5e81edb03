"""Generation strategies, one module each (see base.Strategy), listed once here: params name them in
`generate.strategies`, `generate.teachers` and a recipe's `strategies`, and each record's `source` is the name of
the one that made it. Adding a strategy is a module here with its prompt files in augment/prompts/, and its name in
the import line below, which is the list: every module it imports that holds a `STRATEGY` is one. (Imported by
name, not discovered at run time, so `medaug deps` sees each strategy as a dependency of the generate stage.)

params.py does not import this package (every stage imports params.py, and would then depend on every
strategy's code: editing a prompt would retrain every model). `check` validates the names and that each strategy
serves the task; the generate stage runs it before it plans anything, and `medaug check-params` runs it too.
"""

from __future__ import annotations

from medaug.augment.strategies import grounded, mesh, new, progressive, rewrite  # noqa: F401  the strategies
from medaug.augment.strategies.base import Strategy
from medaug.errors import MedaugError
from medaug.params import Params, untraced

STRATEGIES: dict[str, Strategy] = {m.STRATEGY.name: m.STRATEGY for m in list(globals().values())
                                   if isinstance(getattr(m, "STRATEGY", None), Strategy)}


def get(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise MedaugError(f"unknown generation strategy {name!r} (known: {', '.join(STRATEGIES)})") from None


def check(p: Params) -> None:
    """Every strategy params name is one of STRATEGIES, and each one generate runs serves the task; the error
    names the key, the strategy, the task file and the fix. A check decides no output: its reads are not the
    stage's params (params.untraced)."""
    with untraced():
        _check(p)


def _check(p: Params) -> None:
    known = ", ".join(STRATEGIES)
    for i, name in enumerate(p.generate.strategies):
        if name not in STRATEGIES:
            raise MedaugError(f"params.yaml: generate.strategies[{i}] = {name!r} is no strategy (known: {known})")
    for name in p.generate.teachers:
        if name not in STRATEGIES:
            raise MedaugError(f"params.yaml: generate.teachers.{name}: not a strategy (known: {known})")
    for recipe, v in p.variants.items():
        for i, name in enumerate(v.strategies):
            if name not in STRATEGIES:
                raise MedaugError(f"params.yaml: variants.{recipe}.strategies[{i}] = {name!r} is no strategy "
                                  f"(known: {known})")
    for name in p.generate.strategies:
        why = STRATEGIES[name].supports(p.task)
        if why:
            raise MedaugError(f"params.yaml: generate.strategies has {name}: {why}")
