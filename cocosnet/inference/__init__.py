"""Inference with an exported model: inputs of any size and domain, one pair or many."""

from .domain import DOMAINS
from .jobs import pairs_from_folders, read_pair_list
from .prepare import (
    Letterbox,
    Prepared,
    prepare_edges,
    prepare_exemplar,
    prepare_input,
    prepare_label,
    prepare_pose,
)
from .translator import Job, Translator, translate_files, translate_many

__all__ = [
    "DOMAINS",
    "Job",
    "Letterbox",
    "Prepared",
    "Translator",
    "pairs_from_folders",
    "prepare_edges",
    "prepare_exemplar",
    "prepare_input",
    "prepare_label",
    "prepare_pose",
    "read_pair_list",
    "translate_files",
    "translate_many",
]
