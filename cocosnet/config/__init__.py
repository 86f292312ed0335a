"""Typed, frozen models of the sections of params.yaml, with the official presets.

A section may name a ``preset``; the preset's values are taken first and the section's own keys
override them. Unknown keys, wrong types and impossible combinations raise :class:`ConfigError`
with one line per problem, each naming the offending key.

What lives where (import everything from ``cocosnet.config``; the submodules are the layout):

- ``base``: :class:`ConfigError` and the frozen, strict base of every section;
- ``model``: the ``model`` section (:class:`ModelConfig`);
- ``data``: ``data``, ``preprocess`` (edges, pose, masks), ``index``, ``parallel``, dataset names;
- ``training``: ``loss``, ``train`` (with its pseudo-pair distortions) and ``runtime``;
- ``evaluation``: ``eval`` and ``tracking``;
- ``presets``: the official presets and the resolvers :func:`model_config`, :func:`loss_config`,
  :func:`train_config`;
- ``params``: the whole file (:class:`Params`), :func:`parse_params`, :func:`parse_params_text`.
"""

from __future__ import annotations

from .base import ConfigError
from .data import (
    DataConfig,
    DatasetName,
    DemoDataConfig,
    EdgesConfig,
    IndexConfig,
    MasksConfig,
    ParallelConfig,
    PoseConfig,
    PreprocessConfig,
)
from .evaluation import EvalConfig, MetricName, TrackingConfig
from .model import ModelConfig, PresetName
from .params import Params, parse_params, parse_params_text
from .presets import (
    LOSS_PRESETS,
    PRESETS,
    TRAIN_PRESETS,
    loss_config,
    model_config,
    train_config,
)
from .training import (
    LossConfig,
    LossPresetName,
    PseudoPairConfig,
    RuntimeConfig,
    TrainConfig,
    TrainPresetName,
)

__all__ = [
    "LOSS_PRESETS",
    "PRESETS",
    "TRAIN_PRESETS",
    "ConfigError",
    "DataConfig",
    "DatasetName",
    "DemoDataConfig",
    "EdgesConfig",
    "EvalConfig",
    "IndexConfig",
    "LossConfig",
    "LossPresetName",
    "MasksConfig",
    "MetricName",
    "ModelConfig",
    "ParallelConfig",
    "Params",
    "PoseConfig",
    "PreprocessConfig",
    "PresetName",
    "PseudoPairConfig",
    "RuntimeConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrainPresetName",
    "loss_config",
    "model_config",
    "parse_params",
    "parse_params_text",
    "train_config",
]
