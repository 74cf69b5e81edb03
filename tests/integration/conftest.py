"""The integration tier: real servers on 127.0.0.1 (the fake OpenAI server of support/openai_server.py, `mlflow
server`, `mlflow models serve`), subprocesses of any kind (the `medaug` CLI, `python -c`, stage scripts, torchrun and
accelerate launchers), a headless browser. No `dvc repro` / `dvc exp run`: that is tests/dag/. Every test here is
marked `integration` (tests/conftest.py); the fixtures they share with the unit tier are in tests/conftest.py."""
