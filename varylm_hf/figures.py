"""Figures of the paper from evaluation rows (matplotlib, Agg backend: no display needed).

Each function takes plain lists of numbers keyed by run name and writes one PNG:

* :func:`tvd_histogram` - TVD per context against the oracle (paper Fig. 1);
* :func:`tvd_minus_oracle_histogram` - model TVD minus oracle TVD per context (Fig. 3);
* :func:`tvd_change_scatter` - change in TVD between two runs against the oracle TVD (Fig. 4);
* :func:`entropy_histogram` - entropy of the model's sampled distributions (Fig. 6);
* :func:`coverage_plot` - fraction of distinct human words the model produced (Fig. 7).

:func:`run_figures` draws all that apply to a set of runs (rows from :mod:`varylm_hf.evaluation`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "tvd_histogram",
    "tvd_minus_oracle_histogram",
    "tvd_change_scatter",
    "entropy_histogram",
    "coverage_plot",
    "run_figures",
]

_ORACLE_STYLE = {"color": "0.35", "alpha": 0.35, "label": "Oracle (human vs human)"}


def _plt():
    import matplotlib  # heavy: matplotlib; report (and so the CLI) imports this module

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # heavy: matplotlib; report (and so the CLI) imports this module

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    _plt().close(fig)
    return path


def _bins(lo: float, hi: float, n: int = 20) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _label(name: str, values: Sequence[float]) -> str:
    return f"{name} (mean {statistics.fmean(values):.3f})" if values else name


def _overlaid_hist(ax, series: Mapping[str, Sequence[float]], ref_name: str, ref, bins) -> None:
    """One step histogram per run over a grey filled reference (oracle or humans), shared bins."""
    if ref:
        ax.hist(ref, bins=bins, histtype="stepfilled", **{**_ORACLE_STYLE, "label": _label(ref_name, ref)})
    for name, values in series.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=2, label=_label(name, values))


def tvd_histogram(series: Mapping[str, Sequence[float]], oracle: Sequence[float], path, title: str = "") -> Path:
    """Histogram of per-context TVD for each run, with the oracle TVD filled in grey (Fig. 1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _overlaid_hist(ax, series, "Oracle", oracle, _bins(0.0, 1.0))
    ax.set_xlabel("TVD between model and human next-word distributions (per context)")
    ax.set_ylabel("contexts")
    ax.set_xlim(0, 1)
    ax.set_title(title or "TVD per context (lower is better)")
    ax.legend(fontsize=8, loc="upper left", framealpha=0.85)
    return _save(fig, path)


def tvd_minus_oracle_histogram(series: Mapping[str, Sequence[float]], path, title: str = "") -> Path:
    """Histogram of per-context ``TVD(model) - TVD(oracle)`` for each run (Fig. 3)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    flat = [v for vals in series.values() for v in vals] or [0.0]
    lo, hi = min(-0.5, min(flat)), max(0.8, max(flat))
    bins = _bins(lo, hi, 26)
    for name, values in series.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=2, label=_label(name, values))
    ax.axvline(0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("TVD(model, human) - TVD(oracle halves), per context")
    ax.set_ylabel("contexts")
    ax.set_title(title or "Distance to the oracle (0 = as close as two groups of people)")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.85)
    return _save(fig, path)


def _fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    if len(x) < 2 or len(set(x)) < 2:
        return None
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    return slope, my - slope * mx


def _scatter_with_fits(ax, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], size: int,
                       alpha: float) -> None:
    """One colour per series: its points, its least-squares line, and the zero line."""
    for k, (label, (x, y)) in enumerate(series.items()):
        color = f"C{k}"
        ax.scatter(x, y, s=size, alpha=alpha, color=color, label=label)
        fit = _fit_line(x, y)
        if fit:
            xs = [min(x), max(x)]
            ax.plot(xs, [fit[0] * v + fit[1] for v in xs], color=color, linewidth=2)
    ax.axhline(0, color="0.3", linestyle="--", linewidth=1)


def tvd_change_scatter(oracle: Sequence[float], deltas: Mapping[str, Sequence[float]], path,
                       baseline: str = "baseline", title: str = "") -> Path:
    """Per-context change in TVD (run minus ``baseline``) against the oracle TVD, with a fitted line (Fig. 4).

    Negative values are improvements; the x axis measures how open-ended a context is.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = {name: f"{name} - {baseline} (mean {statistics.fmean(d):+.3f}, "
                    f"{sum(1 for v in d if v < 0) / len(d) if d else 0.0:.0%} improved)" for name, d in deltas.items()}
    _scatter_with_fits(ax, {labels[name]: (oracle, d) for name, d in deltas.items()}, size=10, alpha=0.45)
    ax.set_xlabel("oracle TVD (human vs human; higher = more open-ended context)")
    ax.set_ylabel("change in TVD (negative = closer to humans)")
    ax.set_title(title or "Change in TVD against context open-endedness")
    ax.legend(fontsize=8)
    return _save(fig, path)


def entropy_histogram(series: Mapping[str, Sequence[float]], human: Sequence[float] | None, path,
                      title: str = "") -> Path:
    """Histogram of the entropy (bits) of each run's sampled distributions, and of the human ones (Fig. 6)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    flat = [v for vals in series.values() for v in vals] + list(human or [])
    _overlaid_hist(ax, series, "Humans", human, _bins(0.0, max(1.0, max(flat, default=1.0)), 24))
    ax.set_xlabel("entropy of the next-word distribution (bits)")
    ax.set_ylabel("contexts")
    ax.set_title(title or "Diversity of next-word distributions")
    ax.legend(fontsize=8)
    return _save(fig, path)


def coverage_plot(series: Mapping[str, Sequence[float]], path, title: str = "") -> Path:
    """Box plot (with means) of the fraction of distinct human words each run produced (Fig. 7)."""
    plt = _plt()
    names = list(series)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(names) + 2), 4.2))
    data = [list(series[n]) for n in names]
    ax.boxplot(data, showmeans=True, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels([f"{n}\nmean {statistics.fmean(d):.3f}" for n, d in zip(names, data)], fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction of distinct human words produced")
    ax.set_title(title or "Unique human word coverage (higher is better)")
    return _save(fig, path)


def sampling_bias_scatter(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path,
                          title: str = "") -> Path:
    """Per-context sampled-minus-exact TVD against the entropy of the sampled distribution, one colour per model.

    ``series[name] = (entropies, biases)``. Points above zero are contexts where the sampled estimator
    reads worse than the exact value; the bias grows with the model's spread, which can reorder models.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _scatter_with_fits(ax, {f"{name} (mean bias {statistics.fmean(bias):+.3f})": (ent, bias)
                            for name, (ent, bias) in series.items()}, size=9, alpha=0.4)
    ax.set_xlabel("entropy of the sampled next-word distribution (bits)")
    ax.set_ylabel("sampled TVD - exact TVD")
    ax.set_title(title or "Bias of the sampled TVD estimator against model spread")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _first_seed(rows: list[dict], mode: str) -> list[dict]:
    rows = [r for r in rows if r["mode"] == mode]
    if mode == "sampled" and rows:
        seed = min(r["seed"] for r in rows)
        rows = [r for r in rows if r["seed"] == seed]
    return rows


def run_figures(runs: Mapping[str, list[dict]], out_dir) -> list[Path]:
    """Draw every figure that applies to ``runs`` (name -> evaluation rows) into ``out_dir``.

    Figures use the first (smallest) seed of sampled rows, like the paper's single-seed plots;
    exact rows appear as ``"<name> (exact)"``. With two or more runs, ``fig_tvd_change.png``
    compares each run with the first one on the contexts they share.
    """
    out = Path(out_dir)
    series_rows: dict[str, list[dict]] = {}
    for name, rows in runs.items():
        samp, ex = _first_seed(rows, "sampled"), _first_seed(rows, "exact")
        if samp:
            series_rows[name] = samp
        if ex:
            series_rows[f"{name} (exact)" if samp else name] = ex
    if not series_rows:
        return []
    first = next(iter(series_rows.values()))
    oracle = [r["oracle_tvd"] for r in first]
    written = [
        tvd_histogram({n: [r["tvd"] for r in rs] for n, rs in series_rows.items()}, oracle, out / "fig_tvd_hist.png"),
        tvd_minus_oracle_histogram({n: [r["tvd"] - r["oracle_tvd"] for r in rs] for n, rs in series_rows.items()},
                                   out / "fig_tvd_minus_oracle.png"),
    ]
    sampled = {n: rs for n, rs in series_rows.items() if rs[0]["mode"] == "sampled"}
    if sampled:
        written.append(entropy_histogram({n: [r["entropy"] for r in rs] for n, rs in sampled.items()},
                                         [r["human_entropy"] for r in next(iter(sampled.values()))],
                                         out / "fig_entropy.png"))
        written.append(coverage_plot({n: [r["coverage"] for r in rs] for n, rs in sampled.items()},
                                     out / "fig_coverage.png"))
    if len(series_rows) >= 2:
        names = list(series_rows)
        base = {r["id"]: r for r in series_rows[names[0]]}
        deltas, xs = {}, None
        shared = [i for i in base if all(i in {r["id"] for r in series_rows[n]} for n in names[1:])]
        if shared:
            xs = [base[i]["oracle_tvd"] for i in shared]
            for n in names[1:]:
                by_id = {r["id"]: r for r in series_rows[n]}
                deltas[n] = [by_id[i]["tvd"] - base[i]["tvd"] for i in shared]
            written.append(tvd_change_scatter(xs, deltas, out / "fig_tvd_change.png", baseline=names[0]))
    return written
