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

__all__ = ["CONDITIONS", "ReproduceConfig", "Cell", "ModelRunner", "plan_cells", "run_grid", "write_reports",
           "write_figures", "load_results"]

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
    Training: epochs, learning_rate, batch_size, limit_train (contexts; ``None``: all),
        word_prob_definition, scoring_strategy and group_by_passage (batches of contexts of one
        passage scored as one prefix tree: the fast default; ``False`` shuffles contexts freely).
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
    scoring_strategy: str = "passage"
    group_by_passage: bool = True
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
    if status["done"]:
        try:
            write_figures(out)
        except Exception as err:  # noqa: BLE001 - figures must not lose the tables
            (out / "figures-error.txt").write_text(f"{type(err).__name__}: {err}\n", encoding="utf-8")
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
        value = f"{m:.3f} ± {sd:.3f}" if len(by_cond[cond]) > 1 else f"{m:.3f}"  # no SD from one seed
        lines.append(f"| {(names or {}).get(cond, cond)} | {value} | {len(by_cond[cond])} |")
    return "\n".join(lines)


def write_reports(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``table.md`` (and ``ablation.md``, ``qa.md`` when those cells exist) from finished cells."""
    out = Path(out_dir)
    results = load_results(out)
    has_ablation = any(r["condition"].startswith("ft_k") for r in results)
    reports = [
        ("table.md", "Mean TVD to the human answers over test contexts (mean ± SD over seeds; lower is better)",
         [r for r in results if r["condition"] in CONDITIONS], "mean_tvd", "Mean TVD ± SD (↓)"),
        ("ablation.md", "Label-count ablation: k human answers sampled per context (paper Fig. 9)",
         [r for r in results if r["condition"].startswith("ft_k") or r["condition"] in ("base", "ft_all")]
         if has_ablation else [], "mean_tvd", "Mean TVD ± SD (↓)"),
        ("qa.md", "QA hit rate: fraction of samples equal to the one right answer (paper Table 3; higher is better)",
         [r for r in results if r.get("qa_hit_rate") is not None], "qa_hit_rate", "Hit rate ± SD (↑)"),
    ]
    written = []
    for name, title, rows, key, header in reports:
        if rows:
            path = out / name
            path.write_text(f"{title}\n\n{_table(rows, key, header, DISPLAY)}\n", encoding="utf-8")
            written.append(path)
    return written


# --------------------------------------------------------------------------- the real cells


class ModelRunner:
    """The default ``run_cell``: trains and evaluates real models, loading the base model once.

    Each cell gets a fresh copy of the base model (``copy.deepcopy`` of the one loaded first;
    4-bit models are reloaded instead). Pretrained style trains with :class:`VarTrainer`
    (word-level loss, plain contexts); instruct style with :func:`varylm_hf.sft.train_instruct`
    (LoRA; ``config.recipe`` ``"var"`` or ``"sft"``) and evaluates through the chat template.
    """

    def __init__(self, config: ReproduceConfig, *, records=None, quantization_config=None):
        from .data import load_provo, split_records

        self.config = config
        self.splits = split_records(records if records is not None else load_provo(), "paper")
        self.train = self.splits["train"][: config.limit_train] if config.limit_train else self.splits["train"]
        self.test = self.splits["test"][: config.limit_eval] if config.limit_eval else self.splits["test"]
        self.quantization_config = quantization_config
        self._base = None

    def fresh_model(self):
        """A trainable copy of the base model and its tokenizer."""
        import copy

        from .modeling import load_model_and_tokenizer

        if self._base is None or self.quantization_config is not None:
            self._base = load_model_and_tokenizer(self.config.model, quantization_config=self.quantization_config)
            if self.quantization_config is not None:
                return self._base
        model, tokenizer = self._base
        return copy.deepcopy(model), tokenizer

    def _train(self, cell: Cell, model, tokenizer, cell_dir: Path):
        import torch

        cfg = self.config
        if cfg.style == "pretrained":
            from .trainer import VarTrainingArguments, train_var

            args = VarTrainingArguments(
                output_dir=str(cell_dir / "checkpoints"),
                label_mode=cell.label_mode,
                label_k=cell.k,
                word_prob_definition=cfg.word_prob_definition,
                scoring_strategy=cfg.scoring_strategy,
                group_by_passage=cfg.group_by_passage,
                num_train_epochs=cfg.epochs,
                learning_rate=cfg.learning_rate,
                per_device_train_batch_size=cfg.batch_size,
                seed=cell.seed,
                save_strategy="no",
                logging_steps=0.05,
                report_to="none",
                use_cpu=not torch.cuda.is_available(),
                disable_tqdm=False,
            )
            trainer = train_var(model, tokenizer, self.train, None, args)
            model = trainer.model
        else:
            from .sft import InstructConfig, train_instruct

            if cell.label_mode == "sample_k":
                raise InputError("the label-count ablation (ft_k<k>) is for --style pretrained")
            icfg = InstructConfig(
                output_dir=str(cell_dir / "adapter"),
                recipe=cfg.recipe,
                label_mode=cell.label_mode,
                qlora=self.quantization_config is not None,
                learning_rate=cfg.learning_rate,
                batch_size=cfg.batch_size,
                num_train_epochs=cfg.epochs,
                seed=cell.seed,
                word_prob_definition=cfg.word_prob_definition,
            )
            trainer = train_instruct(model, tokenizer, self.train, None, icfg)
            model = trainer.model
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        model.eval()
        return model, {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None}

    def __call__(self, cell: Cell, config: ReproduceConfig, cell_dir: Path) -> dict:
        """Train (for ``ft_*`` cells) and evaluate one cell; returns its result."""
        from .evaluation import evaluate_model
        from .metrics import oracle_tvd

        if cell.condition == "oracle":
            values = [oracle_tvd(r["answers"], seed=cell.seed) for r in self.test]
            return {"mean_tvd": sum(values) / len(values), "n_contexts": len(values)}
        model, tokenizer = self.fresh_model()
        result: dict = {}
        if cell.label_mode is not None:
            model, info = self._train(cell, model, tokenizer, cell_dir)
            result.update(info)
        prompt, example = ("plain", None) if config.style == "pretrained" else ("instruction", None)
        if cell.condition == "one_shot":
            from .sft import one_shot_example

            prompt, example = "one_shot", one_shot_example(self.train, seed=cell.seed)
        summary = evaluate_model(
            model, tokenizer, self.test, mode=config.eval_mode, seeds=[cell.seed], num_samples=config.num_samples,
            prompt=prompt, one_shot_example=example, name=DISPLAY.get(cell.condition, cell.condition),
            out_dir=cell_dir / "eval", overwrite=True, progress=True,
            config={"model": config.model, "condition": cell.condition, "split": "paper/test"},
        )
        result.update(mean_tvd=summary["mean_tvd"], oracle_tvd=summary["oracle_tvd"], eval_dir="eval",
                      n_contexts=summary["n_contexts"], failure_rate=summary.get("failure_rate"))
        if config.qa:
            from .qa import qa_hit_rate

            qa = qa_hit_rate(model, tokenizer, n_samples=config.num_samples, seed=cell.seed, chat=config.style == "instruct")
            result["qa_hit_rate"] = qa["hit_rate"]
        return result


def write_figures(out_dir: str | os.PathLike, seed: int | None = None) -> Path | None:
    """Comparison table and figures (paper Figs. 1, 3, 4, 6, 7) over the evaluated cells of one seed."""
    from .evaluation import compare_runs

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
    return target
