"""Pick, per label mode, the (learning rate, epochs) with the lowest validation exact TVD of a sweep file.

    python scripts/select_on_validation.py runs/study/lr_sweep.json      # prints: label lr epochs val_tvd

Reads the records of ``scripts/lr_sweep.py`` (ties: the smaller learning rate, then fewer epochs). The test
split plays no part in the choice.
"""

from __future__ import annotations

import json
import sys


def select(records: list[dict]) -> dict[str, tuple[float, int, float]]:
    """``{label_mode: (learning_rate, epochs, validation exact TVD)}`` of the best point of each curve family."""
    best: dict[str, tuple[float, int, float]] = {}
    for r in records:
        for point in r["curve"]:
            epoch = int(round(point["epoch"]))
            if epoch == 0:
                continue
            cand = (r["learning_rate"], epoch, point["exact_tvd/validation"])
            cur = best.get(r["label_mode"])
            if cur is None or (cand[2], cand[0], cand[1]) < (cur[2], cur[0], cur[1]):
                best[r["label_mode"]] = cand
    return best


if __name__ == "__main__":
    for label, (lr, epochs, val) in sorted(select(json.loads(open(sys.argv[1]).read())).items()):
        print(label, f"{lr:g}", epochs, f"{val:.4f}")
