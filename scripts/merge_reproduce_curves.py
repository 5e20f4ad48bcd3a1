"""Add the validation curves of a `varylm reproduce --curves` run to a sweep file of scripts/lr_sweep.py.

    python scripts/merge_reproduce_curves.py runs/study/pretrained-lr1e-4-grouped runs/study/lr_sweep.json

Each trained cell becomes one sweep record (its settings from the cell's result.json); epoch 0 is the sweep's
own base-model point. Records already in the file (same label, learning rate, epochs, batches, seed) are kept.
"""

import json
import sys
from pathlib import Path

LABEL = {"ft_majority": "majority", "ft_all": "all", "ft_corpus": "corpus"}


def main(run_dir: str, sweep_file: str) -> None:
    """Merge (see the module docstring)."""
    sweep = json.loads(Path(sweep_file).read_text())
    start = sweep[0]["curve"][0]
    keys = {(r["label_mode"], r["learning_rate"], r["epochs"], r["group_by_passage"], r["seed"]) for r in sweep}
    for path in sorted(Path(run_dir).glob("cells/*/result.json")):
        cell = json.loads(path.read_text())
        if cell["condition"] not in LABEL or not cell.get("curve"):
            continue
        st = cell["settings"]
        rec = {"model": st["model"], "label_mode": LABEL[cell["condition"]], "learning_rate": st["learning_rate"],
               "epochs": int(st["epochs"]), "group_by_passage": st["group_by_passage"], "seed": cell["seed"],
               "batch_size": st["batch_size"], "source": str(path.parent),
               "curve": [start] + [{k: v for k, v in c.items() if "validation" in k or k == "epoch"}
                                   for c in cell["curve"][1:]],
               "train_loss_first": cell.get("train_loss_first"), "train_loss_last": cell.get("train_loss_last")}
        key = (rec["label_mode"], rec["learning_rate"], rec["epochs"], rec["group_by_passage"], rec["seed"])
        if key not in keys:
            sweep.append(rec)
            keys.add(key)
    Path(sweep_file).write_text(json.dumps(sweep, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
