"""The registered model's code, as MLflow's models-from-code logs it (`python_model=` this file's path): MLflow
runs it when the model loads, with medaug's source (the model's code/ folder) on the path. No pickle: the model
is this code, its artifacts and its pinned requirements."""

import mlflow.models

from medaug.tracking.pyfunc import MedaugQA

mlflow.models.set_model(MedaugQA())
