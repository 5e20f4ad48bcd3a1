"""``varylm demo``: the main job on the offline default model, in about 12 minutes on a 2-core CPU.

Evaluates the offline SmolLM2-135M before and after fine-tuning on the Provo norms: on the majority answer and
on all human answers, at the settings the fidelity study chose on the validation split (docs/results: learning
rate 3e-5 with a 3-epoch schedule; FT majority stopped after epoch 1, FT all after epoch 3). Prints the
Table-1-style comparison, exact TVD on the full test split beside sampled TVD on its first 100 contexts, and
saves the figures under ``runs/demo/``. It is ``varylm reproduce`` with a preset; every flag of ``reproduce``
changes it (``--seeds 42 123 456`` for three seeds, ``--shuffle-contexts`` for the paper's freely shuffled
batches, ~3x slower here).
"""

from __future__ import annotations

from ..reproduce import ReproduceConfig
from . import check_out_writable
from .reproduce import add_grid_arguments, config_from_args, run_and_report

DEMO = ReproduceConfig(
    model="smollm2-gguf",
    style="pretrained",
    conditions=["base", "ft_majority", "ft_all", "oracle"],
    seeds=[42],
    epochs=3.0,
    stop_after_epoch={"ft_majority": 1},
    learning_rate=3e-5,
    batch_size=16,
    group_by_passage=True,
    limit_train=None,
    eval_mode="both",
    num_samples=40,
    limit_eval=100,
    out_dir="runs/demo",
)


def cmd_demo(args) -> int:
    """Run the demo grid and print its table."""
    check_out_writable(args.out)
    config = config_from_args(args)
    config.limit_train = config.limit_train or None
    config.limit_eval = config.limit_eval or None
    stops = ", ".join(f"{k} after epoch {v}" for k, v in config.stop_after_epoch.items())
    print(f"varylm demo: {config.model}, conditions {' '.join(config.conditions)}, seed(s) {config.seeds}, "
          f"lr {config.learning_rate:g}, {config.epochs:g}-epoch schedule{' (' + stops + ')' if stops else ''}, "
          f"{'passage-grouped' if config.group_by_passage else 'shuffled'} batches; exact TVD on "
          f"{config.limit_exact or 'all'} test contexts, sampled TVD on {config.limit_eval or 'all'} x "
          f"{config.num_samples} samples -> {config.out_dir}/")
    return run_and_report(config)


def register(subparsers) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo", help="run the main job on the offline default model",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    add_grid_arguments(parser, DEMO)
    parser.set_defaults(func=cmd_demo)
