"""VGG19 feature extractor returning named ReLU outputs (relu1_1 ... relu5_4).

Two weight layouts are loaded into the same module:

* ``caffe``: the Caffe VGG19 converted to PyTorch (``vgg19_conv.pth``; keys ``conv1_1.weight``...),
  used by CoCosNet's losses and the authors' metrics. It expects BGR in [0, 255] minus the Caffe
  mean, so inputs in [-1, 1] are mapped to [0, 1], flipped to BGR, the mean (in [0, 1] units)
  subtracted, and multiplied by 255, exactly as the official ``vgg_preprocess``.
* ``torchvision``: torchvision's ImageNet VGG19 (keys ``features.N.weight``; the classifier is not
  used): RGB in [0, 1] normalised by the ImageNet mean and std.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as weights_registry

Layout = Literal["caffe", "torchvision"]

# (name, in, out) of the 16 convs; a 2x2 max-pool follows the last conv of each stage.
CONVS = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv4_4", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
    ("conv5_4", 512, 512),
]
_STAGE_ENDS = {"conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"}
# torchvision's features.N index of each conv (ReLUs and pools take the other indices).
TORCHVISION_INDEX = dict(
    zip(
        [c[0] for c in CONVS],
        [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
        strict=True,
    )
)
LAYER_NAMES = [n.replace("conv", "relu") for n, _, _ in CONVS] + [f"pool{i}" for i in range(1, 6)]
_CAFFE_MEAN_BGR = (0.40760392, 0.45795686, 0.48501961)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19(nn.Module):
    def __init__(self, layout: Layout = "caffe"):
        super().__init__()
        if layout not in ("caffe", "torchvision"):
            raise ValueError(f"unknown VGG19 layout {layout!r}")
        self.layout = layout
        self.convs = nn.ModuleDict({n: nn.Conv2d(i, o, 3, padding=1) for n, i, o in CONVS})
        mean, scale = (
            (_CAFFE_MEAN_BGR, (255.0,) * 3)
            if layout == "caffe"
            else (_IMAGENET_MEAN, tuple(1 / s for s in _IMAGENET_STD))
        )
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> the input the pretrained weights expect."""
        x = (image + 1) / 2
        if self.layout == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) * self.scale

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features of the named layers for images in [-1, 1]; stops after the deepest one."""
        wanted = set(layers)
        unknown = wanted - set(LAYER_NAMES)
        if unknown:
            raise ValueError(f"unknown VGG19 layers {sorted(unknown)}; known: {LAYER_NAMES}")
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for name, conv in self.convs.items():
            if len(out) == len(wanted):
                break
            x = F.relu(conv(x))
            relu = name.replace("conv", "relu")
            if relu in wanted:
                out[relu] = x
            if name in _STAGE_ENDS:
                x = F.max_pool2d(x, 2)
                pool = f"pool{name[4]}"
                if pool in wanted:
                    out[pool] = x
        return out

    def load_layout_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Load weights stored in this module's layout (caffe or torchvision keys)."""
        renamed = {}
        for name, _, _ in CONVS:
            prefix = name if self.layout == "caffe" else f"features.{TORCHVISION_INDEX[name]}"
            for p in ("weight", "bias"):
                renamed[f"convs.{name}.{p}"] = f"{prefix}.{p}"
        missing = [k for k in renamed.values() if k not in state]
        # The torchvision file also holds the classifier, which feature extraction never uses.
        extra = [
            k
            for k in state
            if k not in set(renamed.values())
            and not (self.layout == "torchvision" and k.startswith("classifier."))
        ]
        if missing or extra:
            raise ValueError(
                f"{source or 'state dict'} is not a VGG19 {self.layout} state dict: "
                f"missing {missing[:6]}, unexpected {extra[:6]}"
            )
        own = self.state_dict()
        for ours, theirs in renamed.items():
            if tuple(state[theirs].shape) != tuple(own[ours].shape):
                raise ValueError(
                    f"{source}: {theirs} has shape {tuple(state[theirs].shape)}, "
                    f"VGG19 needs {tuple(own[ours].shape)}"
                )
        self.load_state_dict({ours: state[theirs] for ours, theirs in renamed.items()})


def load_vgg19(layout: Layout, weights_dir: str | Path) -> VGG19:
    """A frozen, eval-mode VGG19 with verified pretrained weights from ``weights_dir``."""
    name = "vgg19_caffe" if layout == "caffe" else "vgg19_torchvision"
    state = weights_registry.load_state_dict(name, weights_dir)
    net = VGG19(layout)
    net.load_layout_state_dict(state, source=str(weights_registry.spec(name).filename))
    return net.eval().requires_grad_(False)
