"""Reproduce the paper's study for one model: Base / 1-shot / FT corpus / FT majority / FT all / Oracle over seeds.

Same options as ``varylm reproduce`` (this script forwards to it; ``--help`` lists them all). Re-running the same
command skips the cells that finished; a crashed cell is recorded in its ``error.txt`` and the others go on.

The paper's GPT-2 grid with the label-count ablation and the QA table (needs the gpt2 weights; on a GPU)::

    python examples/reproduce.py --model gpt2 --seeds 42 123 456 --learning-rate 1e-5 --epochs 3 \\
        --ablation-ks 1 2 4 16 32 --qa --out runs/gpt2

The paper's Mistral grid (instruction-tuned, LoRA/QLoRA via TRL SFT on augmented rows)::

    python examples/reproduce.py --model mistralai/Mistral-7B-Instruct-v0.3 --style instruct --recipe sft \\
        --conditions base one_shot ft_corpus ft_majority ft_all oracle --learning-rate 1e-4 --epochs 4 --qa \\
        --out runs/mistral

Offline on a 2-core CPU (what docs/results/ holds; ~25 min per seed, 4 cells)::

    OMP_NUM_THREADS=1 python examples/reproduce.py --model smollm2-gguf --conditions base ft_majority ft_all oracle \\
        --seeds 42 123 --epochs 1 --learning-rate 5e-5 --limit-eval 200 --out runs/repro-pretrained
    # expect mean TVD: Base 0.694, FT (Maj. label) 0.592, FT (Mul. labels) 0.628, Oracle 0.461

Writes ``table.md`` (mean ± SD over seeds, as the paper's Table 1), ``ablation.md`` (Fig. 9), ``qa.md``
(Table 3), ``figures-seed<seed>/`` (Figs. 1, 3, 4, 6, 7) and one folder per cell under ``cells/``.
"""

from __future__ import annotations

import sys

from varylm_hf.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run ``varylm reproduce`` with these arguments."""
    return cli_main(["reproduce", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
