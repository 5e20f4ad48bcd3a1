"""``varylm reproduce``: the paper's grid (Base, 1-shot, FT corpus/majority/all, Oracle) over seeds."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..distributed import Shard
from ..options import RECIPES, STRATEGIES
from ..options import TRAINING_DEFINITIONS as DEFINITIONS
from ..reproduce import CONDITIONS, EVAL_MODES, ModelRunner, ReproduceConfig, run_grid
from . import check_out_writable, positive_float, positive_int
from . import limit as limit_type
from . import seed as seed_type


def add_grid_arguments(parser, defaults: ReproduceConfig) -> None:
    """Flags mapping onto :class:`ReproduceConfig` (shared by ``reproduce`` and ``demo``)."""
    parser.add_argument("--model", default=defaults.model, help=f"Hub id, folder, .gguf file or smollm2-gguf (default: {defaults.model})")
    parser.add_argument("--dataset", default=defaults.dataset,
                        help="a cloze dataset in the Hub layout: a folder of `varylm data build` or a Hub id such as "
                        "varylm/provo_cloze (default: the packaged Provo norms, the paper's split)")
    parser.add_argument("--style", choices=("pretrained", "instruct"), default=defaults.style,
                        help="pretrained: word-level loss on plain contexts; instruct: chat prompt + LoRA (default: %(default)s)")
    parser.add_argument("--recipe", choices=RECIPES, default=defaults.recipe,
                        help="instruct style: word-level fast path (var) or SFT on augmented rows (default: %(default)s)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=defaults.conditions, help="grid rows")
    parser.add_argument("--seeds", nargs="+", type=seed_type, default=defaults.seeds, help="seeds (default: %(default)s)")
    parser.add_argument("--ablation-ks", nargs="*", type=positive_int, default=defaults.ablation_ks,
                        help="label-count ablation: k answers sampled per context (paper: 1 2 4 16 32)")
    parser.add_argument("--qa", action="store_true", default=defaults.qa, help="also run the QA hit-rate check")
    parser.add_argument("--epochs", type=positive_float, default=defaults.epochs, help="training epochs (default: %(default)s)")
    parser.add_argument("--stop-after-epoch", nargs="+", type=_stop_entry, metavar="[COND=]N",
                        default=list(defaults.stop_after_epoch.items()),
                        help="stop after epoch N of the --epochs schedule (the epoch chosen on validation): N for every "
                        "condition, COND=N for one (e.g. ft_majority=1)"
                        + (f" (default: {' '.join(f'{k}={v}' for k, v in defaults.stop_after_epoch.items())})"
                           if defaults.stop_after_epoch else ""))
    parser.add_argument("--learning-rate", type=positive_float, default=defaults.learning_rate, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="per optimizer step: contexts for --style pretrained (default 16), augmented (prompt, answer) "
                        "rows for --style instruct, both recipes (default 32, the paper's)")
    parser.add_argument("--limit-train", type=limit_type, default=defaults.limit_train,
                        help=f"use the first N training contexts, 0: all (default: {defaults.limit_train or 'all'})")
    parser.add_argument("--eval-mode", choices=EVAL_MODES, default=defaults.eval_mode,
                        help="both: exact TVD on the test split (--limit-exact) and sampled TVD on --limit-eval contexts "
                        "(default: %(default)s)")
    parser.add_argument("--num-samples", type=positive_int, default=defaults.num_samples, help="samples per context (default: %(default)s)")
    parser.add_argument("--limit-eval", type=limit_type, default=defaults.limit_eval,
                        help=f"sampled TVD on the first N test contexts, 0: all (default: {defaults.limit_eval or 'all'})")
    parser.add_argument("--limit-exact", type=limit_type, default=defaults.limit_exact,
                        help=f"exact TVD on the first N test contexts, 0: all (default: {defaults.limit_exact or 'all'})")
    parser.add_argument("--curves", action="store_true", default=defaults.curves,
                        help="learning curves: exact TVD on the validation and test splits after every epoch")
    parser.add_argument("--bos", default=defaults.bos,
                        help="first token of plain contexts: auto (own BOS, else the document separator such as "
                        "<|endoftext|>, never a chat marker), none, or a token (default: %(default)s)")
    parser.add_argument("--one-shot-seed", type=seed_type, default=defaults.one_shot_seed,
                        help="draw the 1-shot example from train with this seed (default: the paper's fixed example)")
    parser.add_argument("--word-prob-definition", choices=DEFINITIONS, default=defaults.word_prob_definition,
                        help="word probability in the training loss (default: %(default)s)")
    parser.add_argument("--scoring-strategy", choices=STRATEGIES, default=defaults.scoring_strategy,
                        help="how the training loss scores words (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--group-by-passage", dest="group_by_passage", action="store_true",
                       default=defaults.group_by_passage,
                       help="speed option: batch contexts of one passage together (passages and contexts shuffled "
                       f"per epoch){' (default)' if defaults.group_by_passage else ''}")
    group.add_argument("--shuffle-contexts", dest="group_by_passage", action="store_false",
                       help=f"shuffle contexts freely, as the paper{' (default)' if not defaults.group_by_passage else ''}")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=defaults.bf16,
                        help="bfloat16 mixed precision in training (autocast; float32 weights and adapters); default: on "
                        "for --style instruct with a bf16 CUDA device, off otherwise (on a 2-core CPU a little faster but "
                        "it changes training: docs/benchmarks.md)")
    parser.add_argument("--report-to", default=defaults.report_to,
                        help="the Trainer's report_to for the fine-tuned cells: none (default), tensorboard, wandb...")
    parser.add_argument("--out", default=defaults.out_dir, help="run folder; re-running skips finished cells (default: %(default)s)")


def _stop_entry(text: str) -> tuple[str, int]:
    """``N`` or ``COND=N`` of ``--stop-after-epoch``."""
    cond, _, epoch = text.rpartition("=")
    return cond or "*", positive_int(epoch)


def config_from_args(args) -> ReproduceConfig:
    """Build the :class:`ReproduceConfig` from parsed flags."""
    names = {f.name for f in fields(ReproduceConfig)}
    values = {k.replace("-", "_"): v for k, v in vars(args).items() if k.replace("-", "_") in names}
    values["out_dir"] = args.out
    values["stop_after_epoch"] = dict(getattr(args, "stop_after_epoch", None) or [])
    for name in ("limit_train", "limit_eval", "limit_exact"):  # 0 means all, recorded as None like the default
        if name in values:
            values[name] = values[name] or None
    return ReproduceConfig(**values)


def run_and_report(config: ReproduceConfig) -> int:
    """Run the grid with real models and print the tables; exit status 1 if a cell failed."""
    config.validate()
    status = run_grid(config, ModelRunner(config))
    if not Shard.current().is_main:  # torchrun / accelerate launch: the main process reports
        return 1 if status["failed"] else 0
    out = Path(config.out_dir)
    for name in ("table.md", "ablation.md", "qa.md"):
        if (out / name).exists():
            print("\n" + (out / name).read_text(encoding="utf-8"))
    print(f"done {len(status['done'])}, skipped (finished before) {len(status['skipped'])}, failed {len(status['failed'])}; results in {out}/")
    for name in status["failed"]:
        print(f"  failed: {name} (see {out}/cells/{name}/error.txt; re-run the same command to retry)")
    return 1 if status["failed"] else 0


def cmd_reproduce(args) -> int:
    """Entry point of ``varylm reproduce``."""
    check_out_writable(args.out)  # a file or an unwritable folder stops here, before any model is loaded
    return run_and_report(config_from_args(args))


def register(subparsers) -> None:
    """Add the ``reproduce`` command."""
    parser = subparsers.add_parser(
        "reproduce", help="run the paper's grid for one model (resumable)",
        description="Base / 1-shot / FT corpus / FT majority / FT all / Oracle over seeds, then the "
        "Table-1 markdown, the figures, the label-count ablation and the QA table. Finished cells are skipped.",
    )
    add_grid_arguments(parser, ReproduceConfig())
    parser.set_defaults(func=cmd_reproduce)
