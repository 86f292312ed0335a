"""Where the pipeline keeps things: the path conventions of dvc.yaml, in one place.

Only the top layer (stages, the CLI, the Prefect flows) reads this module; the library below
takes the paths it is handed. Data of dataset DS live under the data root ROOT: the prepared
dataset in ROOT/DS, and each per-dataset stage's output in a sibling ROOT/DS_<stage> (DVC does not
let a stage write inside another stage's output). Models, evaluations and metrics live under the
repository: models/DS, eval/DS, metrics/<stage>_DS.*.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .data.pairs import PAIRS
from .data.prepare import MANIFEST


@dataclass(frozen=True)
class DatasetPaths:
    """Every path of dataset ``dataset`` under the data root ``root`` (dvc.yaml's layout)."""

    root: Path
    dataset: str

    @classmethod
    def of(cls, root: str | os.PathLike, dataset: str) -> DatasetPaths:
        return cls(Path(root), dataset)

    def _sibling(self, stage: str) -> Path:
        return self.root / f"{self.dataset}_{stage}"

    @property
    def dataset_dir(self) -> Path:  # prepare@DS
        return self.root / self.dataset

    @property
    def manifest(self) -> Path:
        return self.dataset_dir / MANIFEST

    @property
    def index_dir(self) -> Path:  # index@DS
        return self._sibling("index")

    @property
    def pairs(self) -> Path:
        return self.index_dir / PAIRS

    @property
    def edges_dir(self) -> Path:  # edges@DS
        return self._sibling("edges")

    @property
    def pose_dir(self) -> Path:  # pose@DS
        return self._sibling("pose")

    @property
    def masks_dir(self) -> Path:  # masks@DS
        return self._sibling("masks")

    @property
    def model_dir(self) -> Path:  # train@DS: export/ (an output) and checkpoints/ (not)
        return Path("models") / self.dataset

    @property
    def export_dir(self) -> Path:
        return self.model_dir / "export"

    @property
    def checkpoints_dir(self) -> Path:
        return self.model_dir / "checkpoints"

    @property
    def eval_dir(self) -> Path:  # evaluate@DS
        return Path("eval") / self.dataset

    def metrics(self, name: str, suffix: str = "json") -> Path:
        """metrics/<name>_DS.<suffix>: train, train_curve, eval, eval_per_class."""
        return Path("metrics") / f"{name}_{self.dataset}.{suffix}"
