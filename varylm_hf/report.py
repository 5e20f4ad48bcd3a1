"""Reports of evaluation runs: summaries over seeds, the Table-1 markdown, run folders and their comparison.

:func:`summarize` turns the per-context rows of :mod:`varylm_hf.evaluation` into per-seed means and mean ± SD over
seeds (the paper's "mean ± SD"), :func:`markdown_table` renders Table 1 (exact TVD beside sampled TVD, the Oracle
and the sampled measure's floor), :func:`write_run` writes a run folder atomically (``contexts.jsonl``,
``summary.json``, ``table.md``, figures), :func:`load_run` reads one back and :func:`compare_runs` puts several in
one table and one set of figures. Pure Python apart from the figures (matplotlib).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from . import figures as _figures  # the module: run_figures is looked up at each call (tests patch it)
from . import metrics as M
from ._io import atomic_folder, check_replaceable
from .errors import InputError

__all__ = ["ROWS_FILE", "SUMMARY_FILE", "TABLE_FILE", "summarize", "markdown_table", "write_run", "load_run",
           "compare_runs"]

ROWS_FILE, SUMMARY_FILE, TABLE_FILE = "contexts.jsonl", "summary.json", "table.md"


def _row_oracle(row: dict, seed: int) -> float:
    """A row's oracle TVD for ``seed`` (rows written before per-seed oracles had one value)."""
    return row.get("oracle_by_seed", {}).get(str(seed), row["oracle_tvd"])


def _stat(values) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None}
    mean, sd = M.mean_sd(vals)
    return {"mean": mean, "sd": sd}


def summarize(rows: list[dict], *, name: str = "model", seeds: Sequence[int] | None = None,
              config: dict | None = None, timing: dict | None = None) -> dict:
    """Summary of per-context rows: per-seed means, mean ± SD over seeds, oracle, exact mode.

    ``sampled.<metric>.per_seed`` holds each seed's mean over contexts; ``mean``/``sd`` are over
    those seed means (the paper's "mean ± SD over seeds"). ``sd_contexts`` is the spread over
    contexts of one seed (the first). Headline keys: ``mean_tvd`` (sampled if run, else exact),
    ``oracle_tvd``, ``mean_tvd_exact`` and ``failure_rate`` when available.
    """
    sampled = [r for r in rows if r["mode"] == "sampled"]
    exact = [r for r in rows if r["mode"] == "exact"]
    if seeds is None:
        seeds = sorted({r["seed"] for r in sampled}) or [42]
    contexts = sorted({r["id"] for r in rows if r.get("id") is not None})
    out: dict = {"name": name, "n_contexts": len(contexts) or len(exact) or len(sampled) // max(1, len(seeds)),
                 "seeds": list(seeds)}
    if sampled:
        out["sampled"] = {}
        by_seed = {s: [r for r in sampled if r["seed"] == s] for s in seeds}
        for metric in (m for m in M.SAMPLED_METRICS if m not in M._NOT_SUMMARISED):
            per_seed = [_stat(r.get(metric) for r in by_seed[s])["mean"] for s in seeds if by_seed[s]]
            stat = _stat(per_seed)
            first = [r[metric] for r in by_seed[seeds[0]] if r.get(metric) is not None]
            stat["per_seed"] = per_seed
            stat["sd_contexts"] = M.mean_sd(first)[1] if first else None
            out["sampled"][metric] = stat
        out["sampled"]["tvd_minus_oracle"] = _stat(
            [statistics.fmean(r["tvd"] - r["oracle_tvd"] for r in by_seed[s]) for s in seeds if by_seed[s]]
        )
    if sampled:  # one oracle split per seed
        per_seed_oracle = [statistics.fmean(r["oracle_tvd"] for r in by_seed[s]) for s in seeds if by_seed[s]]
    elif exact:  # exact mode alone: every seed's oracle split, stored per row
        per_seed_oracle = [statistics.fmean(_row_oracle(r, s) for r in exact) for s in seeds]
    else:
        per_seed_oracle = []
    out["oracle"] = {**_stat(per_seed_oracle), "per_seed": per_seed_oracle}
    if exact:
        out["exact"] = {
            "tvd": {**_stat([statistics.fmean(r["tvd"] for r in exact)]),
                    "sd_contexts": M.mean_sd([r["tvd"] for r in exact])[1]},
            "human_mass": _stat([statistics.fmean(r["human_mass"] for r in exact)]),
            "tvd_minus_oracle": _stat([statistics.fmean(r["tvd"] - r["oracle_tvd"] for r in exact)]),
        }
    # flat headline numbers (read by model cards and the reproduction runner)
    out["mean_tvd"] = (out["sampled"]["tvd"]["mean"] if sampled else out["exact"]["tvd"]["mean"] if exact else None)
    out["oracle_tvd"] = out["oracle"]["mean"]
    if exact:
        out["mean_tvd_exact"] = out["exact"]["tvd"]["mean"]
    if sampled:
        out["failure_rate"] = out["sampled"]["failure_rate"]["mean"]
    any_rows = sampled or exact
    out["human_entropy"] = statistics.fmean(r["human_entropy"] for r in any_rows) if any_rows else None
    versions = {}
    for pkg in ("varylm-hf", "torch", "transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    out["config"] = dict(config or {})
    out["timing"] = dict(timing or {})
    out["versions"] = versions
    return out


def _fmt(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    if stat.get("sd") is None or len(stat.get("per_seed") or [0, 0]) < 2:  # no ± from a single seed
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def markdown_table(summaries: Sequence[dict]) -> str:
    """Table 1 of the paper for one or more runs: one row per run, then the Oracle and perfect-model rows.

    Columns: exact TVD (no sampling), sampled TVD (mean ± SD over seeds, with its number of samples
    and contexts), matched-size TVD, failure rate, entropy (bits), unique-word coverage, contexts and
    seeds. The Oracle row is the first run's (it depends only on the human answers and the seeds);
    the perfect-model row is the floor of the sampled measure: a model whose q equals the human p,
    sampled as many times as the models were.
    """
    first = summaries[0] if summaries else {}
    n_samples = (first.get("config") or {}).get("num_samples")
    head = ("| Model | Exact TVD (↓) | Sampled TVD ± SD (↓" + (f", {n_samples} samples" if n_samples else "") +
            ") | Matched-size TVD (↓) | No-word rate | Entropy (bits) | Coverage (↑) | Contexts | Seeds |")
    lines = [head, "|" + "---|" * 9]
    for s in summaries:
        sm = s.get("sampled", {})
        ex = s.get("exact", {})
        lines.append(
            f"| {s['name']} | {_fmt(ex.get('tvd'))} | {_fmt(sm.get('tvd'))} | {_fmt(sm.get('matched_tvd'))} | "
            f"{_fmt(sm.get('failure_rate'))} | {_fmt(sm.get('entropy'), 2)} | {_fmt(sm.get('coverage'))} | "
            f"{s['n_contexts']} | {', '.join(map(str, s['seeds']))} |"
        )
    if summaries:
        o = first["oracle"]
        lines.append(f"| Oracle | | {_fmt(o)} | | | {first.get('human_entropy') or 0:.2f} (human) | | "
                     f"{first['n_contexts']} | {', '.join(map(str, first['seeds']))} |")
        perfect = (first.get("sampled") or {}).get("perfect_tvd")
        if perfect and perfect.get("mean") is not None:
            lines.append(f"| Perfect model (q = p) sampled at n = {n_samples} | 0 | {_fmt(perfect)} | | | | | "
                         f"{first['n_contexts']} | {', '.join(map(str, first['seeds']))} |")
    return "\n".join(lines) + "\n"


def _check_out_dir(out_dir, overwrite: bool) -> None:
    """Refuse, before any compute, an ``--out`` that exists and may not be replaced (one line, exit 2)."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise InputError(f"--out {out_dir}: folder is not empty (pass --overwrite to replace it)")
        check_replaceable(path)  # only a folder varylm wrote, holding nothing of the user's


def write_run(out_dir, rows: list[dict], summary: dict, *, figures: bool = True, overwrite: bool = False) -> Path:
    """Write rows, summary, table (and figures) into ``out_dir`` atomically.

    Everything is written to a temporary sibling folder first and moved into place at the end,
    so a failure leaves no partial run behind.
    """
    path = Path(out_dir)
    _check_out_dir(path, overwrite)
    with atomic_folder(path) as tmp:
        with open(tmp / ROWS_FILE, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / TABLE_FILE).write_text(markdown_table([summary]), encoding="utf-8")
        if figures:
            _figures.run_figures({summary["name"]: rows}, tmp)
    return path


def load_run(path) -> tuple[dict, list[dict]]:
    """Read a run folder (or its ``summary.json``): ``(summary, rows)``."""
    p = Path(path)
    folder = p.parent if p.name == SUMMARY_FILE else p
    summary_file, rows_file = folder / SUMMARY_FILE, folder / ROWS_FILE
    if not summary_file.is_file():
        raise InputError(f"{path}: not an evaluation run (no {SUMMARY_FILE})")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{summary_file}: not valid JSON ({err.msg}, line {err.lineno})") from None
    rows = []
    if rows_file.is_file():
        with open(rows_file, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise InputError(f"{rows_file}: line {n} is not valid JSON") from None
    return summary, rows


def compare_runs(paths: Sequence, out_dir=None, *, names: Sequence[str] | None = None, figures: bool = True,
                 overwrite: bool = False) -> str:
    """Merge several runs into one Table-1 markdown table (returned) and comparison figures.

    The first run is the baseline of the TVD-change figure (paper Fig. 4: each later run's
    per-context TVD minus the baseline's, against the oracle TVD). Names default to the runs'.
    """
    if not paths:
        raise InputError("compare: give at least one run folder")
    if names is not None and len(names) != len(paths):
        raise InputError(f"--names: {len(names)} names for {len(paths)} runs")
    loaded = [load_run(p) for p in paths]
    summaries, runs = [], {}
    for i, (summary, rows) in enumerate(loaded):
        name = names[i] if names else summary["name"]
        while name in runs:
            name = f"{name} ({i + 1})"
        summaries.append({**summary, "name": name})
        runs[name] = rows
    table = markdown_table(summaries)
    if out_dir is not None:
        path = Path(out_dir)
        _check_out_dir(path, overwrite)
        with atomic_folder(path) as tmp:
            (tmp / TABLE_FILE).write_text(table, encoding="utf-8")
            (tmp / "runs.json").write_text(json.dumps(
                {"runs": [{"name": s["name"], "path": str(p)} for s, p in zip(summaries, paths)],
                 "summaries": summaries}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            if figures:
                _figures.run_figures(runs, tmp)
    return table
