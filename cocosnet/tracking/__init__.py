"""MLflow conventions in one place: where runs go, how params are named, what a run holds.

Everything is passed in explicitly (no argv, params.yaml or environment reads, and MLflow's own
env vars are left alone). :class:`Tracker` uses an explicit :class:`MlflowClient` rather than
``mlflow.start_run`` so that several trackers in one process never share an active run.
"""

from .location import default_tracking_uri, resolve_tracking_uri
from .names import (
    MAX_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    TRUNCATION_MARKER,
    flatten_params,
)
from .source import (
    CODE_PATHS,
    TAG_GIT_COMMIT,
    TAG_SOURCE_COMMIT,
    TAG_SOURCE_NAME,
    TAG_SOURCE_TYPE,
    git_commit,
    source_tags,
)
from .tracker import (
    EXPERIMENT_KIND,
    PARENT_RUN_ENV,
    TAG_DVC_STAGE,
    TAG_LOSSES,
    TAG_PARENT_RUN,
    Tracker,
)

__all__ = [
    "CODE_PATHS",
    "EXPERIMENT_KIND",
    "MAX_KEY_LENGTH",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_PARAM_LENGTH",
    "PARENT_RUN_ENV",
    "TAG_DVC_STAGE",
    "TAG_GIT_COMMIT",
    "TAG_LOSSES",
    "TAG_PARENT_RUN",
    "TAG_SOURCE_COMMIT",
    "TAG_SOURCE_NAME",
    "TAG_SOURCE_TYPE",
    "TRUNCATION_MARKER",
    "Tracker",
    "default_tracking_uri",
    "flatten_params",
    "git_commit",
    "resolve_tracking_uri",
    "source_tags",
]
