"""The exported translator as an MLflow ``pyfunc`` model.

Logged by train@DS as a "models from code" model: MLflow stores this package's
:mod:`.pyfunc_entry` file and the export folder (``model.json`` + safetensors) as its artifacts,
and nothing is pickled. ``mlflow.pyfunc.load_model`` gives a model whose ``predict`` takes a
table with the encoded input image (mask, edge map or pose drawing; PNG/JPEG/WebP/BMP bytes) and
the exemplar photo per row, and returns the output and the warped exemplar as PNG bytes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
from PIL import Image

from .domain import DOMAINS

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature

    from ..tracking import Tracker
    from .translator import Translator

INPUT_COLUMNS = ("input", "exemplar")
OUTPUT_COLUMNS = ("output", "warped")
EXPORT_ARTIFACT = "export"  # the artifact key of the export folder
LOGGED_MODEL_TAG = "logged_model_id"  # on each registered version: the run's logged model
ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")

# Magic numbers of the encodings the table may hold, and the file suffix each is read under.
_MAGIC = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"BM": ".bmp"}


def _suffix(data: bytes, what: str, row: int) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, suffix in _MAGIC.items():
        if data.startswith(magic):
            return suffix
    raise ValueError(f"row {row}: {what} is not a PNG, JPEG, WebP or BMP image")


def _png(image: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def signature() -> ModelSignature:
    """Two binary columns in, two out; the input's domain (``auto`` by default) as a param."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", name) for name in INPUT_COLUMNS]),
        outputs=Schema([ColSpec("binary", name) for name in OUTPUT_COLUMNS]),
        params=ParamSchema([ParamSpec("domain", "string", "auto")]),
    )


def input_example(input_image: Path, exemplar: Path) -> pd.DataFrame:
    """One row of the table ``predict`` takes, from two files."""
    import pandas as pd

    return pd.DataFrame({"input": [input_image.read_bytes()], "exemplar": [exemplar.read_bytes()]})


class TranslatorModel(mlflow.pyfunc.PythonModel):
    """``predict(table) -> table``; the translator loads once, in :meth:`load_context`."""

    translator: Translator | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from .translator import Translator

        self.translator = Translator(context.artifacts[EXPORT_ARTIFACT])

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        import pandas as pd

        from .translator import translate_files

        if self.translator is None:
            raise RuntimeError("the model is not loaded: use mlflow.pyfunc.load_model")
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks column(s) {missing}; it needs {INPUT_COLUMNS}")
        domain = (params or {}).get("domain", "auto")
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}: one of {sorted(DOMAINS)}")
        rows = {name: [] for name in OUTPUT_COLUMNS}
        with tempfile.TemporaryDirectory() as tmp:
            pairs = zip(model_input["input"], model_input["exemplar"], strict=True)
            for i, (data, exemplar) in enumerate(pairs):
                files = {}
                for what, blob in (("input", bytes(data)), ("exemplar", bytes(exemplar))):
                    files[what] = Path(tmp) / f"{i}_{what}{_suffix(blob, what, i)}"
                    files[what].write_bytes(blob)
                out, warped = Path(tmp) / f"{i}_out.png", Path(tmp) / f"{i}_warped.png"
                output = translate_files(
                    self.translator, files["input"], files["exemplar"], out,
                    warped_path=warped, domain=domain,
                )  # fmt: skip
                rows["output"].append(_png(output))
                rows["warped"].append(warped.read_bytes())
        return pd.DataFrame(rows)


def _requirements() -> list[str]:
    """What the model needs, pinned to this environment (MLflow would otherwise load the model
    to infer them)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in _PACKAGES]


_PACKAGES = ("mlflow", "torch", "numpy", "pandas", "pillow", "safetensors", "pydantic")


def log_translator(
    tracker: Tracker,
    export_dir: Path,
    *,
    registered_name: str,
    example: pd.DataFrame | None,
    metrics: Mapping[str, float],
    step: int,
) -> ModelVersion:
    """Log ``export_dir`` as the run's pyfunc model (signature, input example, the safetensors as
    they are) with ``metrics`` on it, and register it as a new version of ``registered_name``."""
    import time

    from mlflow.entities import LoggedModelOutput, Metric
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    client, run_id = tracker.client, tracker.run_id
    model = client.create_logged_model(
        tracker.experiment_id, name="translator", source_run_id=run_id, model_type="pyfunc"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.pyfunc.save_model(
                Path(tmp) / "model",
                python_model=str(ENTRY_FILE),
                artifacts={EXPORT_ARTIFACT: str(export_dir)},
                signature=signature(),
                input_example=example,
                pip_requirements=_requirements(),
            )
            client.log_model_artifacts(model.model_id, str(Path(tmp) / "model"))
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    now = int(time.time() * 1000)
    linked = [Metric(k, float(v), now, step, model_id=model.model_id) for k, v in metrics.items()]
    if linked:
        client.log_batch(run_id, metrics=linked, synchronous=True)
    try:
        client.create_registered_model(registered_name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    # The artifact location, not models:/ID, which the registry would resolve against the
    # process-wide tracking URI rather than this client's; the version names its logged model.
    return client.create_model_version(
        registered_name,
        model.artifact_location,
        run_id=run_id,
        tags={LOGGED_MODEL_TAG: model.model_id},
    )
