"""Bad input fails loudly, through `python -m medaug.cli` in its own process: one error line naming the file and
the line, and nothing created. The rest of the bad input, in process: tests/unit/test_bad_input.py."""

import subprocess
import sys

LATIN1 = "Sjögren".encode("latin-1")  # b"Sj\xf6gren": a common non-UTF-8 export


def test_cache_import_of_a_non_utf8_export_is_one_line_and_creates_nothing(tmp_path):
    export = tmp_path / "export.jsonl"
    export.write_bytes(b'{"key": "k1", "value": "' + LATIN1 + b'"}\n')
    cache = tmp_path / "teacher.sqlite"
    r = subprocess.run([sys.executable, "-m", "medaug.cli", "cache", "--path", str(cache), "import", str(export)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {export}:1: not UTF-8") and r.stderr.count("\n") == 1
    assert not cache.exists()
