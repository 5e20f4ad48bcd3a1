"""Reproduce the paper's study for one model: a resumable grid of (condition, seed) cells.

Conditions (Table 1 of the paper, plus its ablation and QA check):

==============  =====================================================================
``base``        the model as it is
``one_shot``    the 1-shot prompt (instruction-tuned models only)
``ft_corpus``   fine-tuned on the original corpus word (one-hot)
``ft_majority`` fine-tuned on the majority human answer (one-hot)
``ft_all``      fine-tuned on the whole human answer distribution
``ft_k<k>``     fine-tuned on ``k`` sampled answers per context (label-count ablation, Fig. 9)
``oracle``      two disjoint halves of the human answers compared with each other
==============  =====================================================================

Each cell runs in its own folder under ``<out>/cells/<condition>-seed<seed>/`` and is done
when its ``result.json`` exists: a re-run skips finished cells, and a cell that crashes
writes ``error.txt`` and does not stop the others. When the grid is through, the reports are
written from whatever cells finished: ``table.md`` (mean ± SD over seeds of the per-seed mean
TVD), ``ablation.md``, ``qa.md`` and the figures.

The work of a cell (train, then evaluate) is a function ``run_cell(cell, config, cell_dir) ->
dict`` so that the grid logic is independent of the model code (and testable without it).

Modules: :mod:`.config` (conditions, :class:`ReproduceConfig`, :class:`Cell`, :func:`plan_cells`),
:mod:`.grid` (:func:`run_grid`: resuming, crash isolation), :mod:`.results` (:func:`load_results`,
the markdown reports and figures), :mod:`.runner` (:class:`ModelRunner`, the real cells).
"""

from .config import (
    CONDITIONS,
    DISPLAY,
    EVAL_MODES,
    LABEL_MODE,
    PRETRAINED_BATCH_CONTEXTS,
    Cell,
    ReproduceConfig,
    plan_cells,
)
from .grid import run_grid
from .results import load_results, write_figures, write_reports
from .runner import ModelRunner

__all__ = ["CONDITIONS", "DISPLAY", "EVAL_MODES", "LABEL_MODE", "PRETRAINED_BATCH_CONTEXTS", "ReproduceConfig",
           "Cell", "ModelRunner", "plan_cells", "run_grid", "write_reports", "write_figures", "load_results"]
