"""Task loaders, one module each (see base.Loader), listed once here: a task file names one (`loader: medqa`), and
the prepare stage reads the task's source with it. Adding a source schema is a module here and its name in the
import line below, which is the list (every module it imports that holds a `LOADER`); params.py does not import
this package (see augment/strategies/ for why)."""

from __future__ import annotations

from medaug.data.loaders import medmcqa, medqa, progressive, pubmedqa  # noqa: F401  the loaders
from medaug.data.loaders.base import Loader
from medaug.errors import MedaugError
from medaug.params import Params, TaskParams, untraced

LOADERS: dict[str, Loader] = {m.LOADER.name: m.LOADER for m in list(globals().values())
                              if isinstance(getattr(m, "LOADER", None), Loader)}


def get(task: TaskParams) -> Loader:
    """The loader `task` names; an unknown name fails naming the task file and the loaders there are."""
    if task.loader not in LOADERS:
        raise MedaugError(f"{task.file or 'task'}: loader {task.loader!r} is no loader (known: {', '.join(LOADERS)}); "
                          f"a new source schema is a module in src/medaug/data/loaders/")
    return LOADERS[task.loader]


def check(p: Params) -> None:
    """`medaug check-params`: the task's loader exists."""
    with untraced():
        get(p.task)
