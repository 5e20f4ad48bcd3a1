"""Finished cells' results: :func:`load_results`, the markdown reports (:func:`write_reports`) and figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..figures import sampling_bias_scatter
from ..metrics import mean_sd
from ..report import compare_runs, load_run
from .config import CONDITIONS, DISPLAY

__all__ = ["load_results", "write_reports", "write_figures"]


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


def _cell_value(values: list[float]) -> str:
    m, sd = mean_sd(values)
    return f"{m:.3f} ± {sd:.3f}" if len(values) > 1 else f"{m:.3f}"  # no SD from one seed


def _table(results: list[dict], columns: list[tuple[str, str]], names: dict | None = None) -> str:
    """One row per condition: each column the mean ± SD over seeds of one result key."""
    by_cond: dict[str, list[dict]] = {}
    for r in results:
        by_cond.setdefault(r["condition"], []).append(r)
    lines = ["| Model | " + " | ".join(h for _, h in columns) + " | seeds |", "|---|" + "---|" * len(columns) + "---:|"]
    for cond in sorted(by_cond, key=_condition_order):
        cells = []
        for key, _ in columns:
            vals = [float(r[key]) for r in by_cond[cond] if r.get(key) is not None]
            cells.append(_cell_value(vals) if vals else "–")
        seeds = sorted({r["seed"] for r in by_cond[cond]})
        lines.append(f"| {(names or {}).get(cond, cond)} | {' | '.join(cells)} | {', '.join(map(str, seeds))} |")
    return "\n".join(lines)


def _main_table(results: list[dict]) -> str:
    """Table 1: exact TVD (full split) beside sampled TVD (stated subset), with the sampled measure's floor."""
    exact = next((r for r in results if r.get("n_contexts_exact")), {})
    sampled = next((r for r in results if r.get("n_contexts_sampled")), {})
    columns = []
    if exact:
        columns.append(("mean_tvd_exact", f"Exact TVD ± SD (↓; {exact['n_contexts_exact']} contexts)"))
    if sampled:
        columns.append(("mean_tvd_sampled", f"Sampled TVD ± SD (↓; {sampled.get('num_samples')} samples x "
                                            f"{sampled['n_contexts_sampled']} contexts)"))
    if not columns:  # cells that report one headline number
        columns.append(("mean_tvd", "Mean TVD ± SD (↓)"))
    rows = [dict(r) for r in results]
    perfect = [r for r in rows if r["condition"] == "oracle" and r.get("perfect_sampled_tvd") is not None]
    for r in perfect:
        rows.append({"condition": "perfect", "seed": r["seed"], "mean_tvd_sampled": r["perfect_sampled_tvd"]})
    names = {**DISPLAY, "perfect": f"Perfect model (q = p) sampled at n = {sampled.get('num_samples', '?')}"}
    notes = ["", "Exact TVD: exact word probabilities of every human word, residual mass counted (no sampling); "
             "sampled TVD: the paper's estimator. The Oracle row compares two halves of the human answers "
             "(~20 each): it is not a floor for exact TVD. The perfect-model row is the floor of the sampled "
             "measure: what a model whose q equals the human p scores with the same number of samples."]
    return _table(rows, columns, names) + "\n" + "\n".join(notes)


def write_reports(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``table.md`` (and ``ablation.md``, ``qa.md``, ``curves.md`` when there are such cells)."""
    out = Path(out_dir)
    results = load_results(out)
    main = [r for r in results if r["condition"] in CONDITIONS]
    ablation = [r for r in results if r["condition"].startswith("ft_k") or r["condition"] in ("base", "ft_all")]
    reports = {
        "table.md": ("Distance to the human answers over test contexts (mean ± SD over seeds; lower is better)",
                     _main_table(main) if main else ""),
        "ablation.md": ("Label-count ablation: k human answers sampled per context (paper Fig. 9)",
                        _main_table(ablation) if any(r["condition"].startswith("ft_k") for r in results) else ""),
        "qa.md": ("QA hit rate: fraction of samples equal to the one right answer (paper Table 3; higher is better)",
                  _table([r for r in results if r.get("qa_hit_rate") is not None],
                         [("qa_hit_rate", "Hit rate ± SD (↑)")], DISPLAY)
                  if any(r.get("qa_hit_rate") is not None for r in results) else ""),
        "curves.md": ("Learning curves: exact TVD after each epoch (choose epochs and learning rates on validation)",
                      _curves_table(results)),
    }
    written = []
    for name, (title, body) in reports.items():
        if body:
            path = out / name
            path.write_text(f"{title}\n\n{body}\n", encoding="utf-8")
            written.append(path)
    return written


def _curves_table(results: list[dict]) -> str:
    rows = [(r, c) for r in results for c in r.get("curve") or []]
    if not rows:
        return ""
    rows += [(r, {"epoch": 0.0, "exact_tvd/test": r["mean_tvd_exact"]}) for r in results
             if r["condition"] == "base" and r.get("mean_tvd_exact") is not None]  # every curve starts there
    splits = sorted({k.split("/", 1)[1] for _, c in rows for k in c if k.startswith("exact_tvd/")})
    lines = ["| Model | seed | epoch | " + " | ".join(f"exact TVD {s}" for s in splits) + " |",
             "|---|---:|---:|" + "---:|" * len(splits)]
    for r, c in sorted(rows, key=lambda rc: (_condition_order(rc[0]["condition"]), rc[0]["seed"], rc[1]["epoch"])):
        vals = " | ".join(f"{c[f'exact_tvd/{s}']:.4f}" if f"exact_tvd/{s}" in c else "–" for s in splits)
        lines.append(f"| {DISPLAY.get(r['condition'], r['condition'])} | {r['seed']} | {c['epoch']:g} | {vals} |")
    return "\n".join(lines)



def write_figures(out_dir: str | os.PathLike, seed: int | None = None) -> Path | None:
    """Comparison table and figures (paper Figs. 1, 3, 4, 6, 7) over the evaluated cells of one seed."""
    out = Path(out_dir)
    results = [r for r in load_results(out) if r.get("eval_dir")]
    if seed is None and results:
        seed = min(r["seed"] for r in results)
    chosen = sorted((r for r in results if r["seed"] == seed), key=lambda r: _condition_order(r["condition"]))
    if not chosen:
        return None
    paths = [out / "cells" / f"{r['condition']}-seed{r['seed']}" / r["eval_dir"] for r in chosen]
    names = [DISPLAY.get(r["condition"], r["condition"]) for r in chosen]
    target = out / f"figures-seed{seed}"
    compare_runs(paths, target, names=names, figures=True, overwrite=True)
    _bias_figure(out, chosen, target / "fig_sampling_bias.png")
    return target


def _bias_figure(out: Path, chosen: list[dict], path: Path) -> Path | None:
    """Sampled-minus-exact TVD per context against sampled entropy, for cells evaluated both ways."""
    series = {}
    for r in chosen:
        if not (r.get("eval_exact_dir") and r.get("n_contexts_sampled")):
            continue
        cell = out / "cells" / f"{r['condition']}-seed{r['seed']}"
        exact = {row["id"]: row["tvd"] for row in load_run(cell / r["eval_exact_dir"])[1]}
        pts = [(row["entropy"], row["tvd"] - exact[row["id"]]) for row in load_run(cell / r["eval_dir"])[1]
               if row["mode"] == "sampled" and row["id"] in exact]
        if pts:
            series[DISPLAY.get(r["condition"], r["condition"])] = ([p[0] for p in pts], [p[1] for p in pts])
    return sampling_bias_scatter(series, path) if series else None
