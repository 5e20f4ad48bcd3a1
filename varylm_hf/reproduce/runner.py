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
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..metrics import mean_sd
from ..training.rows import DEFAULT_BATCH_ROWS

__all__ = ["CONDITIONS", "ReproduceConfig", "Cell", "ModelRunner", "plan_cells", "run_grid", "write_reports",
           "write_figures", "load_results"]

CONDITIONS = ("base", "one_shot", "ft_corpus", "ft_majority", "ft_all", "oracle")
EVAL_MODES = ("both", "exact", "sampled")
#: Default batch of the pretrained style, in contexts per step (VarTrainer); the instruct style's default is
#: :data:`varylm_hf.training.rows.DEFAULT_BATCH_ROWS` augmented rows, the unit of both instruct recipes.
PRETRAINED_BATCH_CONTEXTS = 16
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
        dataset: a cloze dataset in the Hub layout (folder or Hub id; its own splits); ``None``: the packaged
            Provo norms with the paper's split.
        style: ``"pretrained"`` (word-level loss, plain prompts) or ``"instruct"`` (chat prompt;
            ``recipe`` chooses SFT on augmented data or the equivalent word-level fast path).
    Grid:
        conditions, seeds, ablation_ks (label counts for the ablation; empty: none), qa (run the
        QA hit-rate check on base and fine-tuned models).
    Training: epochs (the length of the learning-rate schedule), stop_after_epoch (``{condition: epoch}``: stop
        that condition at the end of this epoch of the schedule, the point chosen on validation from a learning
        curve; ``{"*": epoch}`` for every condition; empty: train all epochs),
        learning_rate, batch_size (``None``: 16 contexts per step for the pretrained style, whose word-level
        loss batches contexts; 32 augmented rows for the instruct style, the unit of both instruct recipes,
        :data:`varylm_hf.training.rows.BATCH_UNIT`), limit_train (contexts; ``None``: all),
        word_prob_definition, scoring_strategy, group_by_passage (``False``, the default: contexts
        shuffled freely, as the paper intended; ``True``: batches of contexts of one passage, passages
        and contexts within them shuffled per epoch -- the speed option of the ``passage`` strategy),
        bos (first token of plain contexts, :mod:`varylm_hf.conditioning`), curves (exact TVD on the
        validation and test splits after every epoch).
    Evaluation: eval_mode (``"both"``: exact TVD on the test split and sampled TVD on a subset;
        ``"sampled"``, ``"exact"``), num_samples, limit_eval (test contexts of the sampled measure;
        ``None``: all), limit_exact (test contexts of the exact measure; ``None``: all),
        one_shot_seed (``None``: the paper's fixed 1-shot example).
    Logging: report_to (the Trainer's ``report_to``: ``"none"``, ``"tensorboard"``, ``"wandb"``...; not a
        setting of the results).
    """

    model: str = "smollm2-gguf"
    dataset: str | None = None
    style: str = "pretrained"
    recipe: str = "var"
    conditions: list[str] = field(default_factory=lambda: ["base", "ft_corpus", "ft_majority", "ft_all", "oracle"])
    seeds: list[int] = field(default_factory=lambda: [42, 123, 456])
    ablation_ks: list[int] = field(default_factory=list)
    qa: bool = False
    epochs: float = 3.0
    stop_after_epoch: dict[str, int] = field(default_factory=dict)
    learning_rate: float = 1e-5
    batch_size: int | None = None
    limit_train: int | None = None
    eval_mode: str = "both"
    num_samples: int = 40
    limit_eval: int | None = None
    limit_exact: int | None = None
    word_prob_definition: str = "paper"
    scoring_strategy: str = "passage"
    group_by_passage: bool = False
    bos: str = "auto"
    curves: bool = False
    one_shot_seed: int | None = None
    report_to: str = "none"
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
        if self.batch_size is None:  # recorded resolved, so config.json names the batch actually used
            self.batch_size = PRETRAINED_BATCH_CONTEXTS if self.style == "pretrained" else DEFAULT_BATCH_ROWS
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if any(k < 1 for k in self.ablation_ks):
            raise InputError(f"--ablation-ks must be positive integers, got {self.ablation_ks}")
        if self.eval_mode not in EVAL_MODES:
            raise InputError(f"--eval-mode must be one of {', '.join(EVAL_MODES)}, got {self.eval_mode!r}")
        if any(not isinstance(s, int) or not 0 <= s < 2**32 for s in self.seeds):
            raise InputError(f"--seeds must be integers in [0, 2**32 - 1], got {self.seeds}")
        for name in ("epochs", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
        for cond, epoch in self.stop_after_epoch.items():
            if cond != "*" and cond not in CONDITIONS and not cond.startswith("ft_k"):
                raise InputError(f"--stop-after-epoch {cond}={epoch}: unknown condition {cond!r}")
            if not isinstance(epoch, int) or not 1 <= epoch <= self.epochs:
                raise InputError(f"--stop-after-epoch {cond}={epoch}: the epoch must be in [1, --epochs {self.epochs:g}]")
        for name in ("limit_train", "limit_eval", "limit_exact"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0 (0 or unset: all), got {value}")

    def settings(self) -> dict:
        """The settings that change a cell's result (everything but the grid's shape and the folder)."""
        grid = {"conditions", "seeds", "ablation_ks", "out_dir", "qa", "report_to"}
        out = {k: v for k, v in asdict(self).items() if k not in grid}
        if self.style == "instruct":  # --batch-size counts augmented rows since issue #11 (it counted contexts)
            out["batch_unit"] = "rows"
        return out


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
    from ..evaluation import Shard

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
        from tqdm.auto import tqdm

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


# --------------------------------------------------------------------------- the real cells


def _stop_after(epoch: int | None):
    """A callback ending training after ``epoch`` epochs, the learning-rate schedule unchanged (``None``: none)."""
    if epoch is None:
        return None
    from transformers import TrainerCallback

    class StopAfterEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if (state.epoch or 0) >= epoch - 1e-6:
                control.should_training_stop = True

    return StopAfterEpoch()


class ModelRunner:
    """The default ``run_cell``: trains and evaluates real models, loading the base model once.

    Each cell gets a fresh copy of the base model (``copy.deepcopy`` of the one loaded first;
    4-bit models are reloaded instead). Pretrained style trains with :class:`VarTrainer`
    (word-level loss, plain contexts); instruct style with :func:`varylm_hf.training.instruct.train_instruct`
    (LoRA; ``config.recipe`` ``"var"`` or ``"sft"``) and evaluates through the chat template.
    """

    def __init__(self, config: ReproduceConfig, *, records=None, quantization_config=None):
        from ..data import load_cloze

        self.config = config
        self.splits = load_cloze(None if records is not None else config.dataset, records=records)
        self.train = self.splits["train"][: config.limit_train] if config.limit_train else self.splits["train"]
        self.test = self.splits["test"][: config.limit_eval] if config.limit_eval else self.splits["test"]
        self.test_exact = self.splits["test"][: config.limit_exact] if config.limit_exact else self.splits["test"]
        self.quantization_config = quantization_config
        self._base = None

    def fresh_model(self):
        """A trainable copy of the base model and its tokenizer."""
        import copy

        from ..modeling import load_model_and_tokenizer

        if self._base is None or self.quantization_config is not None:
            self._base = load_model_and_tokenizer(self.config.model, quantization_config=self.quantization_config)
            if self.quantization_config is not None:
                return self._base
        model, tokenizer = self._base
        return copy.deepcopy(model), tokenizer

    def _train(self, cell: Cell, model, tokenizer, cell_dir: Path):
        import torch

        cfg = self.config
        common = dict(label_mode=cell.label_mode, word_prob_definition=cfg.word_prob_definition,
                      num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, seed=cell.seed,
                      report_to=cfg.report_to)  # the settings both styles' trainer arguments take
        if cfg.style == "pretrained":
            from ..training.var import VarTrainingArguments, train_var

            args = VarTrainingArguments(
                output_dir=str(cell_dir / "checkpoints"),
                label_k=cell.k,
                scoring_strategy=cfg.scoring_strategy,
                group_by_passage=cfg.group_by_passage,
                bos=cfg.bos,
                per_device_train_batch_size=cfg.batch_size,
                save_strategy="no",
                logging_steps=0.05,
                use_cpu=not torch.cuda.is_available(),
                disable_tqdm=False,
                **common,
            )
            curve = self._curve_callback(tokenizer, "plain")
            stop = cfg.stop_after_epoch.get(cell.condition, cfg.stop_after_epoch.get("*"))
            callbacks = [c for c in (curve, _stop_after(stop)) if c is not None]
            trainer = train_var(model, tokenizer, self.train, None, args, callbacks=callbacks or None)
            model = trainer.model
        else:
            from ..training.adapters import paper_model_config
            from ..training.instruct import train_instruct
            from ..training.sft_config import VarSFTConfig

            if cell.label_mode == "sample_k":
                raise InputError("the label-count ablation (ft_k<k>) is for --style pretrained")
            icfg = VarSFTConfig(output_dir=str(cell_dir / "adapter"), recipe=cfg.recipe, batch_size=cfg.batch_size,
                                group_by_passage=cfg.group_by_passage and cfg.recipe == "var", **common)
            curve = self._curve_callback(tokenizer, "instruction")
            stop = cfg.stop_after_epoch.get(cell.condition, cfg.stop_after_epoch.get("*"))
            callbacks = [c for c in (curve, _stop_after(stop)) if c is not None]
            trainer = train_instruct(model, tokenizer, self.train, None, icfg, callbacks=callbacks or None,
                                     model_config=paper_model_config(load_in_4bit=self.quantization_config is not None))
            model = trainer.model
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        model.eval()
        info = {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None}
        if curve is not None:
            info["curve"] = curve.curve
        return model, info

    def _curve_callback(self, tokenizer, prompt: str):
        """The per-epoch exact-TVD callback on validation and test, when ``config.curves`` asks for it."""
        if not self.config.curves:
            return None
        from ..callbacks import ExactTVDCallback

        final_test = ("test",) if self.config.eval_mode in ("exact", "both") else ()
        return ExactTVDCallback({"validation": self.splits["validation"], "test": self.test_exact}, tokenizer,
                                prompt=prompt, bos=self.config.bos, at_start=("validation",), skip_final=final_test)

    def _oracle(self, seed: int) -> dict:
        """Oracle (two halves of the human answers) on both test sets, and the sampled measure's floor."""
        from ..metrics import oracle_tvd, perfect_model_tvd

        cfg = self.config
        result: dict = {}
        if cfg.eval_mode in ("exact", "both"):
            values = [oracle_tvd(r["answers"], seed=seed) for r in self.test_exact]
            result.update(mean_tvd_exact=sum(values) / len(values), n_contexts_exact=len(values))
        if cfg.eval_mode in ("sampled", "both"):
            values = [oracle_tvd(r["answers"], seed=seed) for r in self.test]
            perfect = [perfect_model_tvd(r["answers"], cfg.num_samples, seed) for r in self.test]
            result.update(mean_tvd_sampled=sum(values) / len(values), n_contexts_sampled=len(values),
                          num_samples=cfg.num_samples, perfect_sampled_tvd=sum(perfect) / len(perfect))
        result["mean_tvd"] = result.get("mean_tvd_sampled", result.get("mean_tvd_exact"))
        return result

    def __call__(self, cell: Cell, config: ReproduceConfig, cell_dir: Path) -> dict:
        """Train (for ``ft_*`` cells) and evaluate one cell; returns its result."""
        from ..evaluation import evaluate_model

        if cell.condition == "oracle":
            return self._oracle(cell.seed)
        model, tokenizer = self.fresh_model()
        result: dict = {}
        if cell.label_mode is not None:
            model, info = self._train(cell, model, tokenizer, cell_dir)
            result.update(info)
        prompt, example = ("plain", None) if config.style == "pretrained" else ("instruction", None)
        if cell.condition == "one_shot":
            from ..prompts import one_shot_example

            prompt, example = "one_shot", one_shot_example(self.train, seed=config.one_shot_seed)
        name = DISPLAY.get(cell.condition, cell.condition)
        common = dict(seeds=[cell.seed], prompt=prompt, one_shot_example=example, name=name, overwrite=True,
                      progress=True, bos=config.bos, config={"model": config.model, "condition": cell.condition,
                                                             "split": "paper/test"})
        if config.eval_mode in ("sampled", "both"):
            s = evaluate_model(model, tokenizer, self.test, mode="sampled", num_samples=config.num_samples,
                               out_dir=cell_dir / "eval", **common)
            result.update(mean_tvd_sampled=s["mean_tvd"], n_contexts_sampled=s["n_contexts"], eval_dir="eval",
                          num_samples=config.num_samples, failure_rate=s.get("failure_rate"),
                          entropy=s["sampled"]["entropy"]["mean"], oracle_tvd=s["oracle_tvd"])
        if config.eval_mode in ("exact", "both"):
            s = evaluate_model(model, tokenizer, self.test_exact, mode="exact", out_dir=cell_dir / "eval_exact",
                               **common)
            result.update(mean_tvd_exact=s["mean_tvd_exact"], n_contexts_exact=s["n_contexts"],
                          eval_exact_dir="eval_exact", human_mass=s["exact"]["human_mass"]["mean"])
            result.setdefault("eval_dir", "eval_exact")
        result["mean_tvd"] = result.get("mean_tvd_sampled", result.get("mean_tvd_exact"))
        result["n_contexts"] = result.get("n_contexts_sampled", result.get("n_contexts_exact"))
        if result.get("curve") and "mean_tvd_exact" in result:  # the final evaluation completes the curve
            result["curve"][-1].setdefault("exact_tvd/test", result["mean_tvd_exact"])
        if config.qa:
            from ..qa import qa_hit_rate

            qa = qa_hit_rate(model, tokenizer, n_samples=config.num_samples, seed=cell.seed, chat=config.style == "instruct")
            result["qa_hit_rate"] = qa["hit_rate"]
        return result


def write_figures(out_dir: str | os.PathLike, seed: int | None = None) -> Path | None:
    """Comparison table and figures (paper Figs. 1, 3, 4, 6, 7) over the evaluated cells of one seed."""
    from ..evaluation import compare_runs

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
    from ..evaluation import load_run
    from ..figures import sampling_bias_scatter

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
