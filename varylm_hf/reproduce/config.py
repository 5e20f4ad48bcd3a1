"""The grid's settings and cells: the conditions, :class:`ReproduceConfig` (validated) and :func:`plan_cells`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import InputError
from ..training.rows import DEFAULT_BATCH_ROWS

__all__ = ["CONDITIONS", "DISPLAY", "EVAL_MODES", "LABEL_MODE", "PRETRAINED_BATCH_CONTEXTS", "ReproduceConfig", "Cell",
           "plan_cells"]

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
        validation and test splits after every epoch), bf16 (bfloat16 mixed precision in training: autocast with
        float32 weights and adapters; ``None``: each style's default, on for the instruct style with a bf16-capable
        CUDA device and off otherwise; evaluation stays in the model's dtype).
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
    bf16: bool | None = None
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
