"""Word log-probabilities log q(w|c): the word-scoring engine (:mod:`varylm_hf.scoring.engine`)."""

from .engine import *  # noqa: F403
from .engine import (  # noqa: F401  (private names other modules import)
    _BRANCH_CHUNK_TOKENS,
    InputError,
    __all__,
    _build_forest,
    _class_log_mass,
    _forward_params,
    _model_dtype_device,
    _model_max_positions,
    _score_context,
    _score_trunk,
    _unwrap,
)
