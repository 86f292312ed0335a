"""Save and load trained networks as safetensors plus the resolved model config (model.json).

Loading never unpickles: safetensors holds only tensors, model.json only JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import ConfigError, ModelConfig, model_config
from ..files import atomic_path, write_text_atomic
from .correspondence import CorrespondenceNet
from .factory import build_correspondence, build_translation
from .translation import TranslationNet

CONFIG_FILE = "model.json"
FILES = {"correspondence": "correspondence.safetensors", "translation": "translation.safetensors"}


def save_state(net: nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def save_generator(
    out_dir: str | Path, cfg: ModelConfig, corr: CorrespondenceNet, gen: TranslationNet
) -> Path:
    """Write the two networks needed for inference and the config that builds them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_state(corr, out / FILES["correspondence"])
    save_state(gen, out / FILES["translation"])
    write_text_atomic(out / CONFIG_FILE, json.dumps(cfg.model_dump(), indent=2) + "\n")
    return out


def load_generator(model_dir: str | Path) -> tuple[ModelConfig, CorrespondenceNet, TranslationNet]:
    """Rebuild the correspondence and translation networks saved by :func:`save_generator`."""
    model_dir = Path(model_dir)
    cfg_path = model_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: not a saved cocosnet model directory")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{cfg_path}: not valid JSON ({err})") from None
    cfg = model_config(raw)
    corr, gen = build_correspondence(cfg, init=False), build_translation(cfg, init=False)
    for name, net in (("correspondence", corr), ("translation", gen)):
        path = model_dir / FILES[name]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        try:
            net.load_state_dict(load_file(str(path)), strict=True)
        except (RuntimeError, SafetensorError) as err:  # mismatched keys/shapes, or corrupt
            raise ValueError(f"{path} does not match {cfg_path}: {err}") from None
    return cfg, corr.eval(), gen.eval()
