"""Choose the learning rate and the number of epochs on the VALIDATION split only (issue #11, item 7).

For each (label mode, learning rate), fine-tune the offline SmolLM2 with :class:`varylm_hf.training.var.VarTrainer`
(word-level loss, the settings of ``varylm reproduce``) and measure the exact TVD on the validation split after
every epoch (:class:`varylm_hf.callbacks.ExactTVDCallback`). The test split is never touched here; the chosen
setting is then run with ``varylm reproduce``, which reports the test split.

    OMP_NUM_THREADS=2 python scripts/lr_sweep.py --labels majority all --learning-rates 3e-5 3e-4 \\
        --epochs 3 --group-by-passage --out docs/results/lr_sweep.json

Writes a JSON file (one record per run: settings, per-epoch validation exact TVD, final training loss,
seconds) and prints a markdown table; existing records with the same settings are kept, so the sweep resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from varylm_hf.callbacks import ExactTVDCallback
from varylm_hf.data import load_provo, split_records
from varylm_hf.modeling import load_model_and_tokenizer
from varylm_hf.training.var import VarTrainingArguments, train_var


def _key(rec: dict) -> tuple:
    return rec["label_mode"], rec["learning_rate"], rec["epochs"], rec["group_by_passage"], rec["seed"]


def _table(records: list[dict]) -> str:
    epochs = max((len(r["curve"]) for r in records), default=0)
    lines = ["| label mode | learning rate | batches | seed | " + " | ".join(f"epoch {e}" for e in range(epochs)) +
             " | best (epoch) |", "|---|---:|---|---:|" + "---:|" * epochs + "---|"]
    for r in sorted(records, key=lambda r: (r["label_mode"], r["learning_rate"])):
        vals = [c["exact_tvd/validation"] for c in r["curve"]]
        best = min(range(len(vals)), key=vals.__getitem__)
        cells = " | ".join(f"{v:.4f}" for v in vals)
        lines.append(f"| {r['label_mode']} | {r['learning_rate']:g} | "
                     f"{'grouped' if r['group_by_passage'] else 'shuffled'} | {r['seed']} | {cells} | "
                     f"{vals[best]:.4f} ({r['curve'][best]['epoch']:g}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the sweep (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-gguf")
    parser.add_argument("--labels", nargs="+", default=["majority", "all"])
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--group-by-passage", action="store_true", help="the speed option (default: shuffled)")
    parser.add_argument("--out", default="docs/results/lr_sweep.json")
    args = parser.parse_args(argv)

    out = Path(args.out)
    records = json.loads(out.read_text()) if out.exists() else []
    splits = split_records(load_provo(), "paper")
    base, tokenizer = load_model_and_tokenizer(args.model)
    start_curve = None
    for label in args.labels:
        for lr in args.learning_rates:
            rec = {"model": args.model, "label_mode": label, "learning_rate": lr, "epochs": args.epochs,
                   "group_by_passage": args.group_by_passage, "seed": args.seed, "batch_size": args.batch_size}
            if any(_key(r) == _key(rec) for r in records):
                print(f"done before: {label} lr={lr:g}")
                continue
            callback = ExactTVDCallback({"validation": splits["validation"]}, tokenizer, at_start=())
            if start_curve is None:  # the base model's validation exact TVD, once: epoch 0 of every curve
                start_curve = ExactTVDCallback({"validation": splits["validation"]}, tokenizer).measure(base, 0.0)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                targs = VarTrainingArguments(
                    output_dir=tmp, label_mode=label, learning_rate=lr, num_train_epochs=args.epochs,
                    per_device_train_batch_size=args.batch_size, seed=args.seed, scoring_strategy="passage",
                    group_by_passage=args.group_by_passage, save_strategy="no", logging_steps=0.05,
                    report_to="none", use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
                trainer = train_var(copy.deepcopy(base), tokenizer, splits["train"], None, targs, callbacks=[callback])
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            rec.update(curve=[start_curve] + callback.curve, train_loss_first=losses[0], train_loss_last=losses[-1],
                       seconds=round(time.perf_counter() - t0, 1))
            records.append(rec)
            tmp_out = out.with_suffix(".tmp")
            tmp_out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out.write_text(json.dumps(records, indent=2) + "\n")
            os.replace(tmp_out, out)
            print(f"{label} lr={lr:g}: " + ", ".join(f"{c['exact_tvd/validation']:.4f}" for c in rec["curve"]))
    print(_table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
