"""One sha256 over files: their paths relative to a folder and their bytes, in sorted order, so two digests are
equal exactly when the files are. A local model's weights (models.weights_digest) and the task's source data
(data.prepare.provenance) are named by it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_files(folder: Path, files: list[Path]) -> str:
    """The hex sha256 of `files` (each inside `folder`): every file's POSIX path relative to `folder`, a NUL, its
    bytes (read a MiB at a time), a NUL; in sorted path order."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
