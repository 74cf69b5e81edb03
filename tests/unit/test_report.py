"""`medaug report` without metrics files fails with the fix. The table and its Δ columns from `dvc metrics diff` (a
dvc process): tests/integration/test_report.py."""

import pytest

from medaug.report import render


def test_report_needs_metrics(tmp_path):
    from medaug.errors import MedaugError

    with pytest.raises(MedaugError, match=r"metrics/eval: no metrics files; run `dvc repro` first"):
        render(tmp_path)
