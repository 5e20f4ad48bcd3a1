#!/usr/bin/env python3
"""One table from the finished cells of several `varylm reproduce` folders (e.g. one seed run with exact and sampled
TVD, a second seed with exact TVD only), each number with the seeds it is over.

    python scripts/combine_cells.py runs/study/instruct runs/study/instruct-seed123-exact > table.md
    python scripts/combine_cells.py docs/results/instruct docs/results/instruct-seed123-exact   # exported folders

Columns: exact TVD (mean ± SD over the seeds that have it), sampled TVD (idem, with samples x contexts), entropy of
the samples (bits), coverage of the human words, no-word rate, the model's mass on the human words (exact), the
training loss at the end, and the seeds of each estimator. Reads ``cells/*/result.json`` (and the sampled
coverage from each cell's ``eval/summary.json``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ORDER = ["base", "one_shot", "ft_corpus", "ft_majority", "ft_all", "oracle"]
NAMES = {"base": "Base", "one_shot": "1-Shot", "ft_corpus": "FT (Orig. corpus)", "ft_majority": "FT (Maj. label)",
         "ft_all": "FT (Mul. labels)", "oracle": "Oracle (two halves of the human answers)"}


def _stat(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _results(folder: Path) -> list[dict]:
    """The cells of one run folder (``cells/*/result.json``) or of an exported one (``cells.json``, docs/results)."""
    exported = folder if folder.name == "cells.json" else folder / "cells.json"
    if exported.is_file() and not (folder / "cells").is_dir():
        return json.loads(exported.read_text())
    results = []
    for path in sorted(folder.glob("cells/*/result.json")):
        result = json.loads(path.read_text())
        summary = path.parent / str(result.get("eval_dir") or "eval") / "summary.json"
        if result.get("coverage") is None and summary.is_file():  # sampled coverage lives in the eval summary
            result["coverage"] = json.loads(summary.read_text()).get("sampled", {}).get("coverage", {}).get("mean")
        results.append(result)
    if not results:
        raise SystemExit(f"combine_cells: {folder}: no cells/*/result.json and no cells.json")
    return results


def main(folders: list[str]) -> str:
    """The markdown table of every condition found in ``folders``."""
    cells: dict[str, list[dict]] = {}
    for folder in folders:
        for result in _results(Path(folder)):
            cells.setdefault(result["condition"], []).append(result)
    any_sampled = next((r for rs in cells.values() for r in rs if r.get("n_contexts_sampled")), {})
    any_exact = next((r for rs in cells.values() for r in rs if r.get("n_contexts_exact")), {})
    head = (f"| Model | Exact TVD (↓; {any_exact.get('n_contexts_exact', '?')} contexts) | seeds | Sampled TVD (↓; "
            f"{any_sampled.get('num_samples', '?')} samples x {any_sampled.get('n_contexts_sampled', '?')} contexts) | "
            "seeds | Entropy (bits, sampled) | Coverage | No-word rate | Human-word mass (exact) | final train loss |")
    lines = [head, "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for cond in sorted(cells, key=lambda c: ORDER.index(c) if c in ORDER else 99):
        rs = sorted(cells[cond], key=lambda r: r["seed"])
        exact = [r for r in rs if r.get("mean_tvd_exact") is not None]
        sampled = [r for r in rs if r.get("mean_tvd_sampled") is not None]

        def col(key, rows, digits=2):
            vals = [r[key] for r in rows if r.get(key) is not None]
            return f"{statistics.fmean(vals):.{digits}f}" if vals else ""

        lines.append(
            f"| {NAMES.get(cond, cond)} | {_stat([r['mean_tvd_exact'] for r in exact])} | "
            f"{', '.join(str(r['seed']) for r in exact)} | {_stat([r['mean_tvd_sampled'] for r in sampled])} | "
            f"{', '.join(str(r['seed']) for r in sampled)} | {col('entropy', sampled)} | {col('coverage', sampled, 3)} | "
            f"{col('failure_rate', sampled, 3)} | {col('human_mass', exact, 3)} | {col('train_loss_last', rs)} |")
    perfect = [r["perfect_sampled_tvd"] for r in cells.get("oracle", []) if r.get("perfect_sampled_tvd") is not None]
    if perfect:
        lines.append(f"| Perfect model (q = p) sampled at n = {any_sampled.get('num_samples', '?')} | 0 | | "
                     f"{_stat(perfect)} | | | | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.stdout.write(main(sys.argv[1:]))
