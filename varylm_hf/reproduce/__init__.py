"""Reproduce the paper's study for one model: a resumable grid of (condition, seed) cells (see :mod:`.runner`)."""

from .runner import (
    CONDITIONS,
    DISPLAY,
    EVAL_MODES,
    LABEL_MODE,
    PRETRAINED_BATCH_CONTEXTS,
    Cell,
    ModelRunner,
    ReproduceConfig,
    load_results,
    plan_cells,
    run_grid,
    write_figures,
    write_reports,
)

__all__ = ["CONDITIONS", "DISPLAY", "EVAL_MODES", "LABEL_MODE", "PRETRAINED_BATCH_CONTEXTS", "ReproduceConfig",
           "Cell", "ModelRunner", "plan_cells", "run_grid", "write_reports", "write_figures", "load_results"]
