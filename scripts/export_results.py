#!/usr/bin/env python3
"""Copy the readable part of a `varylm reproduce` run folder into docs/results/<name>/.

    python scripts/export_results.py runs/repro-pretrained docs/results/smollm2-pretrained

Copies table.md (and ablation.md, qa.md, curves.md), config.json, every cell's result.json (as cells.json)
and the comparison figures of each seed; leaves out checkpoints, adapters and per-context rows.
"""

import json
import shutil
import sys
from pathlib import Path


def _with_coverage(path: Path) -> dict:
    """A cell's result.json, plus the sampled coverage that lives in its eval summary (not kept in docs)."""
    result = json.loads(path.read_text())
    summary = path.parent / str(result.get("eval_dir") or "eval") / "summary.json"
    if result.get("coverage") is None and summary.is_file():
        result["coverage"] = json.loads(summary.read_text()).get("sampled", {}).get("coverage", {}).get("mean")
    return result


def main(src: str, dst: str) -> None:
    src_p, dst_p = Path(src), Path(dst)
    if not (src_p / "config.json").is_file():
        raise SystemExit(f"{src}: not a varylm reproduce folder (no config.json)")
    dst_p.mkdir(parents=True, exist_ok=True)
    for name in ("table.md", "ablation.md", "qa.md", "curves.md", "config.json"):
        if (src_p / name).is_file():
            shutil.copy2(src_p / name, dst_p / name)
    cells = [_with_coverage(p) for p in sorted(src_p.glob("cells/*/result.json"))]
    (dst_p / "cells.json").write_text(json.dumps(cells, indent=2) + "\n", encoding="utf-8")
    for fig_dir in sorted(src_p.glob("figures-seed*")):
        out = dst_p / fig_dir.name
        out.mkdir(exist_ok=True)
        for f in fig_dir.iterdir():
            if f.suffix in (".png", ".md"):
                shutil.copy2(f, out / f.name)
    print(f"exported {src} -> {dst}: {len(cells)} cells")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
