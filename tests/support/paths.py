"""Where the repository and the real data are, and the skip for tests that need the real PubMedQA PQA-L."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBMEDQA = ROOT.parent / "shared/data/pubmedqa"

needs_pqal = pytest.mark.skipif(not (PUBMEDQA / "ori_pqal.json").exists(),
                                reason=f"real PubMedQA PQA-L not found at {PUBMEDQA}")

PARAMS_READ = ".dvc/tmp/params-read"
"""Where each DVC stage of a test project writes the params it read and declares (medaug.declared; the suite sets
MEDAUG_CHECK_PARAMS to it, relative to the stage's project)."""

SAMPLES = ROOT / "src/medaug/data/sample"
"""The bundled synthetic sources: ori_pqal_sample.json (PubMedQA, the default data.source) and a folder per exam
task (medqa, medmcqa, progressive)."""
SAMPLE_PATH = SAMPLES / "ori_pqal_sample.json"
