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
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError
from .metrics import mean_sd

__all__ = ["CONDITIONS", "ReproduceConfig", "Cell", "plan_cells", "run_grid", "write_reports", "load_results"]

CONDITIONS = ("base", "one_shot", "ft_corpus", "ft_majority", "ft_all", "oracle")
LABEL_MODE = {"ft_corpus": "corpus", "ft_majority": "majority", "ft_all": "all"}
DISPLAY = {
    "base": "Base",
    "one_shot": "1-Shot",
    "ft_corpus": "FT (Orig. corpus)",
    "ft_majority": "FT (Maj. label)",
    "ft_all": "FT (Mul. labels)",
    "oracle": "Oracle",
}


@dataclass
class ReproduceConfig:
    """Settings of a reproduction run (all recorded in ``<out>/config.json``).

    Model:
        model: Hub id, folder, ``.gguf`` file or ``"smollm2-gguf"`` (default: the offline SmolLM2).
        style: ``"pretrained"`` (word-level loss, plain prompts) or ``"instruct"`` (chat prompt;
            ``recipe`` chooses SFT on augmented data or the equivalent word-level fast path).
    Grid:
        conditions, seeds, ablation_ks (label counts for the ablation; empty: none), qa (run the
        QA hit-rate check on base and fine-tuned models).
    Training: epochs, learning_rate, batch_size, limit_train (contexts; ``None``: all).
    Evaluation: eval_mode (``"sampled"``, ``"exact"``), num_samples, limit_eval (test contexts).
    """

    model: str = "smollm2-gguf"
    style: str = "pretrained"
    recipe: str = "var"
    conditions: list[str] = field(default_factory=lambda: ["base", "ft_corpus", "ft_majority", "ft_all", "oracle"])
    seeds: list[int] = field(default_factory=lambda: [42, 123, 456])
    ablation_ks: list[int] = field(default_factory=list)
    qa: bool = False
    epochs: float = 3.0
    learning_rate: float = 1e-5
    batch_size: int = 16
    limit_train: int | None = None
    eval_mode: str = "sampled"
    num_samples: int = 40
    limit_eval: int | None = None
    word_prob_definition: str = "paper"
    out_dir: str = "runs/reproduce"

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise InputError(f"--conditions: unknown {', '.join(unknown)} (expected some of {', '.join(CONDITIONS)})")
        if self.style not in ("pretrained", "instruct"):
            raise InputError(f"--style must be 'pretrained' or 'instruct', got {self.style!r}")
        if "one_shot" in self.conditions and self.style != "instruct":
            raise InputError("--conditions one_shot needs --style instruct (the 1-shot prompt is for instruction-tuned models)")
        if not self.seeds:
            raise InputError("--seeds: give at least one seed")
        if any(k < 1 for k in self.ablation_ks):
            raise InputError(f"--ablation-ks must be positive integers, got {self.ablation_ks}")
        if self.eval_mode not in ("sampled", "exact"):
            raise InputError(f"--eval-mode must be 'sampled' or 'exact', got {self.eval_mode!r}")


@dataclass(frozen=True)
class Cell:
    """One (condition, seed) of the grid; ``label_mode``/``k`` say how it trains (``None``: no training)."""

    condition: str
    seed: int
    label_mode: str | None = None
    k: int | None = None

    @property
    def name(self) -> str:
        """Folder name of the cell."""
        return f"{self.condition}-seed{self.seed}"


def plan_cells(config: ReproduceConfig) -> list[Cell]:
    """All cells of the grid, seed-major so that one full seed finishes first."""
    config.validate()
    cells = []
    for seed in config.seeds:
        for cond in config.conditions:
            cells.append(Cell(cond, seed, LABEL_MODE.get(cond)))
        for k in config.ablation_ks:
            cells.append(Cell(f"ft_k{k}", seed, "sample_k", k))
    return cells


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def run_grid(
    config: ReproduceConfig,
    run_cell: Callable[[Cell, ReproduceConfig, Path], dict],
    *,
    progress: bool = True,
) -> dict:
    """Run every unfinished cell, then write the reports; returns ``{"done", "skipped", "failed"}``.

    ``run_cell`` returns the cell's result (at least ``mean_tvd``; optionally ``qa_hit_rate``
    and ``per_context`` file names relative to the cell folder). Finished cells (with a
    ``result.json``) are skipped; a cell raising an exception is recorded in ``error.txt`` and
    the grid goes on.
    """
    out = Path(config.out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", asdict(config))
    cells = plan_cells(config)
    status = {"done": [], "skipped": [], "failed": []}
    todo = [c for c in cells if not (out / "cells" / c.name / "result.json").exists()]
    status["skipped"] = [c.name for c in cells if c not in todo]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="reproduce", unit="cell")
    try:
        for cell in todo:
            cell_dir = out / "cells" / cell.name
            cell_dir.mkdir(parents=True, exist_ok=True)
            (cell_dir / "error.txt").unlink(missing_ok=True)
            if bar is not None:
                bar.set_postfix_str(cell.name)
            start = time.perf_counter()
            try:
                result = dict(run_cell(cell, config, cell_dir))
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - a crashed cell must not lose the others
                (cell_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
                status["failed"].append(cell.name)
            else:
                result.update(asdict(cell), seconds=round(time.perf_counter() - start, 1))
                _write_json(cell_dir / "result.json", result)
                status["done"].append(cell.name)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    write_reports(out)
    return status


def load_results(out_dir: str | os.PathLike) -> list[dict]:
    """The ``result.json`` of every finished cell under ``out_dir/cells``."""
    cells = Path(out_dir) / "cells"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(cells.glob("*/result.json"))]


def _condition_order(name: str) -> tuple:
    if name in CONDITIONS:
        return (0, CONDITIONS.index(name) if name != "oracle" else 99, 0)
    if name.startswith("ft_k"):
        return (1, 0, int(name[4:]))
    return (2, 0, 0)


def _table(results: list[dict], key: str, header: str, names: dict | None = None) -> str:
    by_cond: dict[str, list[float]] = {}
    for r in results:
        if r.get(key) is not None:
            by_cond.setdefault(r["condition"], []).append(float(r[key]))
    lines = [f"| Model | {header} | seeds |", "|---|---|---:|"]
    for cond in sorted(by_cond, key=_condition_order):
        m, sd = mean_sd(by_cond[cond])
        lines.append(f"| {(names or {}).get(cond, cond)} | {m:.3f} ± {sd:.3f} | {len(by_cond[cond])} |")
    return "\n".join(lines)


def write_reports(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``table.md`` (and ``ablation.md``, ``qa.md`` when those cells exist) from finished cells."""
    out = Path(out_dir)
    results = load_results(out)
    written = []
    main = [r for r in results if r["condition"] in CONDITIONS]
    if main:
        path = out / "table.md"
        path.write_text(
            "Mean TVD to the human answers over test contexts (mean ± SD over seeds; lower is better)\n\n"
            + _table(main, "mean_tvd", "Mean TVD ± SD (↓)", DISPLAY)
            + "\n",
            encoding="utf-8",
        )
        written.append(path)
    ablation = [r for r in results if r["condition"].startswith("ft_k") or r["condition"] in ("base", "ft_all")]
    if any(r["condition"].startswith("ft_k") for r in ablation):
        path = out / "ablation.md"
        path.write_text(
            "Label-count ablation: k human answers sampled per context (paper Fig. 9)\n\n"
            + _table(ablation, "mean_tvd", "Mean TVD ± SD (↓)", DISPLAY)
            + "\n",
            encoding="utf-8",
        )
        written.append(path)
    if any(r.get("qa_hit_rate") is not None for r in results):
        path = out / "qa.md"
        path.write_text(
            "QA hit rate: fraction of samples equal to the one right answer (paper Table 3; higher is better)\n\n"
            + _table(results, "qa_hit_rate", "Hit rate ± SD (↑)", DISPLAY)
            + "\n",
            encoding="utf-8",
        )
        written.append(path)
    return written
