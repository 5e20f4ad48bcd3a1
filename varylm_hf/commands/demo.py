"""``varylm demo``: the main job on the offline default model (see README)."""

from __future__ import annotations

from pathlib import Path


def cmd_demo(args) -> int:
    """Build the Provo dataset under the run folder and print its summary."""
    from collections import Counter

    from ..data import Normalizer, build_dataset_folder, load_provo, split_records
    from .data import _print_summary

    out = Path(args.out)
    stats: Counter = Counter()
    splits = split_records(load_provo(stats=stats), "paper")
    build_dataset_folder(out / "provo_cloze", splits, meta={"normalizer": Normalizer().to_dict(), "stats": stats}, overwrite=True)
    print(f"Provo cloze norms, paper split (dataset written to {out / 'provo_cloze'}):")
    _print_summary(splits)
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` command."""
    demo = subparsers.add_parser("demo", help="run the main job on the offline default model",
                                 description="Run the demo: data, evaluation and fine-tuning on the offline SmolLM2.")
    demo.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    demo.set_defaults(func=cmd_demo)
