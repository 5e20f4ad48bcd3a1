"""``varylm demo``: the main job on the offline default model, in minutes on a laptop CPU.

Evaluates the offline SmolLM2-135M before and after a short multi-answer fine-tune (and a
majority-answer fine-tune) on the Provo norms, prints the Table-1-style comparison and saves
the figures under ``runs/demo/``. It is ``varylm reproduce`` with a small preset; every flag
of ``reproduce`` scales it up (``--limit-eval 0 --limit-train 0 --seeds 42 123 456`` for all).
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
    epochs=1.0,
    learning_rate=5e-5,
    batch_size=16,
    limit_train=None,
    eval_mode="sampled",
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
    print(f"varylm demo: {config.model}, conditions {' '.join(config.conditions)}, seed(s) {config.seeds}, "
          f"{config.limit_eval or 'all'} test contexts x {config.num_samples} samples -> {config.out_dir}/")
    return run_and_report(config)


def register(subparsers) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo", help="run the main job on the offline default model",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    add_grid_arguments(parser, DEMO)
    parser.set_defaults(func=cmd_demo)
