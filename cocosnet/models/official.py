"""Import the official released checkpoints (``latest_net_Corr.pth``, ``latest_net_G.pth``).

The map from our state-dict keys to the official ones is explicit: a short ordered table of
renames per network (module names) plus the spectral-norm storage difference (the official code
uses the old ``torch.nn.utils.spectral_norm``: ``weight_orig``/``weight_u``/``weight_v``; we use
the parametrisation API). Every official key must be consumed and every one of ours filled with a
tensor of the same shape, otherwise the import stops and lists what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..config import ModelConfig
from ..files import load_tensor_state
from .export import save_generator
from .factory import build_correspondence, build_translation

NetKind = Literal["correspondence", "translation", "discriminator"]

_SPECTRAL = [
    (r"\.parametrizations\.weight\.original$", ".weight_orig"),
    (r"\.parametrizations\.weight\.0\._u$", ".weight_u"),
    (r"\.parametrizations\.weight\.0\._v$", ".weight_v"),
]
_SPADE = [(r"\.mlp_shared\.", ".mlp_shared.1.")]
_ADAPTOR_BLOCKS = ["head_0", "G_middle_0", "G_middle_1"]
_GEN_BLOCKS = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]

RENAMES: dict[NetKind, list[tuple[str, str]]] = {
    "correspondence": [
        (r"^input_adaptor\.", "adaptive_model_seg."),
        (r"^exemplar_adaptor\.", "adaptive_model_img."),
        (
            r"^(adaptive_model_\w+)\.convs\.(\d)\.conv\.",
            lambda m: f"{m[1]}.layer{int(m[2]) + 1}.0.",
        ),
        (
            r"^(adaptive_model_\w+)\.blocks\.(\d)\.",
            lambda m: f"{m[1]}.{_ADAPTOR_BLOCKS[int(m[2])]}.",
        ),
        (r"^shared\.", "layer."),
        *_SPADE,
        *_SPECTRAL,
    ],
    "translation": [
        (r"^stem\.", "fc."),
        (r"^blocks\.(\d)\.", lambda m: f"{_GEN_BLOCKS[int(m[1])]}."),
        (r"^attention\.out\.", "attn.o."),
        (r"^attention\.", "attn."),
        (r"^to_rgb\.", "conv_img."),
        *_SPADE,
        *_SPECTRAL,
    ],
    "discriminator": [
        (r"^scales\.(\d+)\.", r"discriminator_\1."),
        (r"\.attention\.out\.", ".attn.o."),
        (r"\.attention\.", ".attn."),
        *_SPECTRAL,
    ],
}
# Official keys that are deliberately not imported: the discriminator's decoder is never called.
IGNORED = {"discriminator": re.compile(r"^discriminator_\d+\.dec\.")}


class OfficialCheckpointError(ValueError):
    """An official checkpoint does not match the architecture it is imported into."""


def official_key(key: str, kind: NetKind, n_layers_d: int = 4) -> str:
    """The official state-dict key of one of our keys."""
    if kind == "discriminator":
        key = _official_disc_layer(key, n_layers_d)
    for pattern, repl in RENAMES[kind]:
        key = re.sub(pattern, repl, key)
    return key


def _official_disc_layer(key: str, n_layers_d: int) -> str:
    """layers.0 -> model0.0 (plain conv), layers.1..n-1 -> modelN.0.0 (conv in a norm wrapper),
    layers.n -> modelN.0 (logit conv)."""

    def repl(m: re.Match) -> str:
        n = int(m[1])
        return f".model{n}.0.0." if 0 < n < n_layers_d else f".model{n}.0."

    return re.sub(r"\.layers\.(\d+)\.conv\.", repl, key)


def key_map(net: nn.Module, kind: NetKind, n_layers_d: int = 4) -> dict[str, str]:
    """official key -> our key, for every entry of ``net``'s state dict."""
    mapping = {official_key(k, kind, n_layers_d): k for k in net.state_dict()}
    if len(mapping) != len(net.state_dict()):
        raise AssertionError(f"the {kind} key map is not one-to-one")
    return mapping


def load_official_state(
    net: nn.Module,
    state: Mapping[str, torch.Tensor],
    kind: NetKind,
    source: str = "checkpoint",
    n_layers_d: int = 4,
) -> None:
    """Copy an official state dict into ``net``, refusing any missing, unexpected or
    mis-shaped key."""
    mapping = key_map(net, kind, n_layers_d)
    ours = net.state_dict()
    state = dict(state)
    ignored = IGNORED.get(kind)
    missing = sorted(k for k in mapping if k not in state)
    unexpected = sorted(k for k in state if k not in mapping and not (ignored and ignored.match(k)))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(ours[mapping[k]].shape)}"
        for k in mapping
        if k in state and tuple(state[k].shape) != tuple(ours[mapping[k]].shape)
    ]
    problems = []
    if any(k.startswith("module.") for k in state):
        problems.append("keys start with 'module.': strip the DataParallel prefix first")
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", mismatched),
    ):
        if items:
            shown = "\n    ".join(items[:10])
            more = f"\n    ... and {len(items) - 10} more" if len(items) > 10 else ""
            problems.append(f"{len(items)} {label} key(s):\n    {shown}{more}")
    if problems:
        raise OfficialCheckpointError(
            f"{source} does not match the {kind} network of this preset:\n  "
            + "\n  ".join(problems)
        )
    net.load_state_dict({mapping[k]: state[k] for k in mapping}, strict=True)


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a .pth state dict without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} not found")
    return load_tensor_state(path, OfficialCheckpointError)


def import_official(
    cfg: ModelConfig, corr_path: str | Path, gen_path: str | Path, out_dir: str | Path
) -> Path:
    """Import the released netCorr and netG into our modules and save them as safetensors."""
    corr = build_correspondence(cfg, init=False)
    gen = build_translation(cfg, init=False)
    load_official_state(corr, read_official_checkpoint(corr_path), "correspondence", str(corr_path))
    load_official_state(gen, read_official_checkpoint(gen_path), "translation", str(gen_path))
    return save_generator(out_dir, cfg, corr.eval(), gen.eval())
