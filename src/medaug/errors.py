"""One exception type for every error a user can fix; its message is one line naming the file/line or key. Also
the status logging every entry point shares (the CLI and the stage scripts, which all import this module)."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

LOGGER = "medaug"
LEVEL_ENV = "MEDAUG_LOG_LEVEL"
"""The stage scripts' log level (DEBUG, INFO, WARNING...); `medaug -v/-q` sets it for the stages it runs."""


class MedaugError(Exception):
    """A user-fixable error (bad data, params or state). The CLI prints `error: <message>` and exits 1; exit
    status 2 is kept for usage errors (a missing option, a bad value), as click users expect."""


def one_line(e: BaseException) -> str:
    """`<Type>: <first line of its message>`: a library's error inside a MedaugError's one line."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is at emit time (pytest's capsys, a redirect), as print did."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


KNOWN_WARNINGS = (
    # peft 0.21 asks transformers 5 for the attribute's old name, each time a model is wrapped
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    # MLflow cannot tell which of its local source classes a dataset file is; it picks the right one
    (UserWarning, r"The specified dataset source can be interpreted in multiple ways"),
)
"""Library warnings that every training or scoring stage printed and no user can act on: filtered here, once, for
the CLI and every stage script (`setup_logging`); `-v` shows them again."""

QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
"""What `medaug -q` sets for itself and the stages it runs: no progress bar (tqdm's, the hub's, datasets'), no
library warning, transformers' own log at errors only (medaug's warnings and errors still show)."""


def progress_bars() -> bool:
    """Progress bars show at the default level and below, not under `-q` (the "medaug" logger above INFO)."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


def setup_logging(level: int | str | None = None) -> logging.Logger:
    """Status lines of every medaug module go to stderr as bare messages (they read as the prints they were);
    `level` (a number or a name) defaults to $MEDAUG_LOG_LEVEL, else INFO. Idempotent: one handler, whatever
    the number of calls. Returns the "medaug" logger."""
    if level is None:
        level = os.environ.get(LEVEL_ENV, "").strip().upper() or logging.INFO
    if isinstance(level, str):
        if not isinstance(logging.getLevelName(level), int):
            raise MedaugError(f"{LEVEL_ENV}={level!r}: not a log level (DEBUG, INFO, WARNING, ERROR)")
        level = logging.getLevelName(level)
    log = logging.getLogger(LOGGER)
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    import warnings

    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("default" if level <= logging.DEBUG else "ignore", message=message,
                                category=category)
    return log


# Library use (a notebook, a test) sees the status lines too, as it did when they were prints.
if not logging.getLogger(LOGGER).handlers:
    setup_logging(logging.INFO)


@contextmanager
def user_errors() -> Iterator[None]:
    """A MedaugError inside becomes one line on stderr and exit status 1 (a stage script's contract)."""
    try:
        yield
    except MedaugError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def guarded(fn, *args, **kwargs):
    """Run a stage entry point with the CLI's logging ($MEDAUG_LOG_LEVEL); a MedaugError becomes one line on
    stderr and exit status 1. A string it returns is the stage's last line: what it wrote and its headline (said
    by process 0 alone under torchrun / accelerate launch)."""
    with user_errors():
        log = setup_logging()
        result = fn(*args, **kwargs)
        if isinstance(result, str) and not int(os.environ.get("RANK", "0")):
            log.info(result)
        from medaug import params

        if params.reads() is not None:  # under the read check (MEDAUG_CHECK_PARAMS)
            from medaug import declared

            declared.check()
        return result
