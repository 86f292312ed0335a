"""The input domains a translation accepts, and how a file's domain is told when not given.

Both the file preparation (:mod:`.prepare`) and the photo preprocessing (:mod:`.photos`) need
these names; they live here so neither imports the other for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

Domain = Literal["auto", "label", "edges", "pose", "photo-edges", "photo-mask", "photo-pose"]
DOMAINS: tuple[str, ...] = (
    "auto", "label", "edges", "pose", "photo-edges", "photo-mask", "photo-pose"
)  # fmt: skip
POSE_TXT = ("_candidate.txt", "_subset.txt")  # the OpenPose files of one image


def is_keypoints_table(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def resolve_domain(path: str | os.PathLike, semantic_nc: int, domain: Domain = "auto") -> str:
    """'auto': pose for .npz / OpenPose txt / keypoints .parquet files, edges for a 1-channel
    model, else label."""
    if domain != "auto":
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
        return domain
    if (
        Path(path).suffix == ".npz"
        or Path(path).name.endswith(POSE_TXT)
        or is_keypoints_table(path)
    ):
        return "pose"
    return "edges" if semantic_nc == 1 else "label"
