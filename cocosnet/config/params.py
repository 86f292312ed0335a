"""The whole params.yaml (:class:`Params`) and the functions that read and validate it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from .base import ConfigError, _Section
from .data import DataConfig, IndexConfig, ParallelConfig, PreprocessConfig
from .evaluation import EvalConfig, TrackingConfig
from .model import ModelConfig
from .presets import _format_errors, loss_config, model_config, train_config
from .training import LossConfig, RuntimeConfig, TrainConfig


class Params(_Section):
    """The whole params.yaml (sections are added as the stages that read them land)."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    index: IndexConfig = IndexConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    parallel: ParallelConfig = ParallelConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _check_rendezvous(self) -> Params:
        if self.train.nnodes > 1 and not self.runtime.rdzv_endpoint:
            raise ValueError(
                "train.nnodes > 1 needs runtime.rdzv_endpoint (host:port of the rendezvous)"
            )
        return self


def parse_params_text(text: str, source: str = "params.yaml") -> Params:
    """Validate the YAML text of a params file (``source``: its name, for messages)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = " ".join((getattr(err, "problem", None) or str(err)).split())
        raise ConfigError(f"{source}{where}: not valid YAML ({problem})") from None
    return parse_params(raw)


_HEADER = "invalid configuration:\n  "


def _problems(report: str) -> list[str]:
    """The one-line problems of a section's report (:func:`_format_errors`' or one line)."""
    return report.removeprefix(_HEADER).split("\n  ")


def parse_params(raw: Mapping[str, Any] | None) -> Params:
    """Validate the parsed contents of params.yaml; every problem of every section is
    reported at once (one fix per run is slow when a stage takes minutes to start)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params must be a mapping of sections, got {type(raw).__name__}")
    problems = []
    unknown = sorted((k for k in raw if k not in Params.model_fields), key=repr)  # any key type
    if unknown:
        problems.append(
            f"unknown params section(s): {unknown}; known: {sorted(Params.model_fields)}"
        )
    resolvers = {"model": model_config, "loss": loss_config, "train": train_config}
    sections = {}
    for name, field in Params.model_fields.items():
        section = raw.get(name) or {}
        if not isinstance(section, Mapping):
            problems.append(f"{name}: expected a mapping, got {type(section).__name__}")
            continue
        try:
            if name in resolvers:
                sections[name] = resolvers[name](section)
            else:
                sections[name] = field.annotation.model_validate(section)
        except ConfigError as err:
            problems += _problems(str(err))
        except ValidationError as err:
            problems += _problems(_format_errors(name, err))
    if problems:
        raise ConfigError(_HEADER + "\n  ".join(problems))
    try:
        return Params(**sections)
    except ValidationError as err:
        raise ConfigError(_format_errors("", err)) from None
