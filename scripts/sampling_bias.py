#!/usr/bin/env python3
"""Mean sampled-minus-exact TVD per condition, on the contexts both estimators scored, from a `varylm reproduce`
run folder (each cell's ``eval/contexts.jsonl`` and ``eval_exact/contexts.jsonl``).

    python scripts/sampling_bias.py runs/study/instruct-seed123
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _tvds(path: Path, mode: str) -> dict[str, float]:
    with path.open(encoding="utf-8") as f:
        rows = (json.loads(line) for line in f)
        return {r["id"]: r["tvd"] for r in rows if r["mode"] == mode}


def main(folder: str) -> str:
    """One line per cell: its name, the number of shared contexts and the mean sampled-minus-exact TVD."""
    lines = []
    for cell in sorted(Path(folder).glob("cells/*")):
        sampled, exact = cell / "eval" / "contexts.jsonl", cell / "eval_exact" / "contexts.jsonl"
        if not (sampled.is_file() and exact.is_file()):
            continue
        s, e = _tvds(sampled, "sampled"), _tvds(exact, "exact")
        shared = [k for k in s if k in e]
        if shared:
            lines.append(f"{cell.name}\t{len(shared)}\t{statistics.fmean(s[k] - e[k] for k in shared):+.4f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.stdout.write(main(sys.argv[1]))
