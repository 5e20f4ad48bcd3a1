"""Run the grid: every unfinished cell in its own folder, crashes isolated, then the reports (:func:`run_grid`)."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..distributed import Shard
from ..errors import InputError
from .config import Cell, ReproduceConfig, plan_cells
from .results import load_results, write_figures, write_reports

__all__ = ["run_grid"]


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
    cells = plan_cells(config)
    _check_finished_settings(out, config)
    # under torchrun / accelerate launch every process runs every cell (training is data-parallel, evaluation
    # sharded by passage); the main process alone writes, and the others wait for it after each cell
    shard = Shard.current()
    main = shard.is_main
    progress = progress and main
    if main:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", asdict(config))
    shard.barrier()
    status = {"done": [], "skipped": [], "failed": []}
    todo = [c for c in cells if not (out / "cells" / c.name / "result.json").exists()]
    status["skipped"] = [c.name for c in cells if c not in todo]
    bar = None
    if progress:
        from tqdm.auto import tqdm  # heavy: tqdm.auto (~0.1 s); the CLI parser imports this module

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="reproduce", unit="cell")
    try:
        for cell in todo:
            cell_dir = out / "cells" / cell.name
            if main:
                cell_dir.mkdir(parents=True, exist_ok=True)
                (cell_dir / "error.txt").unlink(missing_ok=True)
            shard.barrier()
            if bar is not None:
                bar.set_postfix_str(cell.name)
            start = time.perf_counter()
            try:
                result = dict(run_cell(cell, config, cell_dir))
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - a crashed cell must not lose the others
                name = "error.txt" if main else f"error-rank{shard.rank}.txt"
                (cell_dir / name).write_text(traceback.format_exc(), encoding="utf-8")
                status["failed"].append(cell.name)
            else:
                result.update(asdict(cell), seconds=round(time.perf_counter() - start, 1), settings=config.settings())
                if main:
                    _write_json(cell_dir / "result.json", result)
                status["done"].append(cell.name)
            shard.barrier()
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not main:
        return status
    write_reports(out)
    if status["done"]:
        try:
            write_figures(out)
        except Exception as err:  # noqa: BLE001 - figures must not lose the tables
            (out / "figures-error.txt").write_text(f"{type(err).__name__}: {err}\n", encoding="utf-8")
    return status


def _check_finished_settings(out: Path, config: ReproduceConfig) -> None:
    """Stop (one line, naming the settings) when finished cells in ``out`` were computed with other settings.

    A cell's result depends on every setting of :meth:`ReproduceConfig.settings`; skipping a finished
    cell after one of them changed would mix results, and ``config.json`` would claim settings that
    the results did not use.
    """
    if (out / "config.json").exists() and not (out / "config.json").is_file():
        raise InputError(f"--out {out}: config.json there is not a file")
    want = config.settings()
    for result in load_results(out):
        had = result.get("settings")
        if had is None:
            raise InputError(f"--out {out}: finished cells from an older varylm without recorded settings; "
                             "use a new --out")
        changed = sorted(k for k in want if had.get(k) != want[k])
        if changed:
            diff = ", ".join(f"--{k.replace('_', '-')} {had.get(k)} -> {want[k]}" for k in changed)
            raise InputError(f"--out {out}: finished cells used other settings ({diff}); use a new --out or "
                             "the same settings")
