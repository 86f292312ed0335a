"""The code MLflow runs to build the translator model ("models from code": no pickle). It is
stored with each logged model; :mod:`.pyfunc` holds the model."""

from mlflow.models import set_model

from cocosnet.inference.pyfunc import TranslatorModel

set_model(TranslatorModel())
