"""Augmented SFT vs the one-row-per-context fast path (``recipe="var"``): same loss, time per context.

For a few Provo training contexts, one LoRA forward+backward over the data of those contexts:

* ``sft``: TRL SFTTrainer's own tokenisation, collator and ``compute_loss`` on the augmented
  rows (one per human answer, ~40 per context), in micro-batches of ``--rows_per_batch``;
* ``var``: :func:`varylm_hf.sft.var_sft_loss` with one unit per context (prompt once, each
  distinct answer once, weighted by its count), for the ``tree`` and ``context`` strategies.

Prints a markdown table (tokens fed to the model, seconds per context, speed-up) and the two
losses over all rows (token mean), which must agree. Usage (2-core CPU, ~3 min)::

    OMP_NUM_THREADS=2 python benchmarks/bench_sft.py --contexts 6
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time


def main(argv=None) -> int:
    """Run the comparison and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-gguf")
    p.add_argument("--contexts", type=int, default=6)
    p.add_argument("--rows_per_batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from peft import get_peft_model
    from tqdm.auto import tqdm

    from varylm_hf import sft
    from varylm_hf.data import load_provo, split_records
    from varylm_hf.modeling import load_model_and_tokenizer

    torch.manual_seed(args.seed)
    train = split_records(load_provo())["train"]
    records = [train[i] for i in sorted(random.Random(args.seed).sample(range(len(train)), args.contexts))]
    model, tok = load_model_and_tokenizer(args.model)
    sft.unmark_gguf_quantization(model)
    model = get_peft_model(model, sft.lora_config(model))
    model.train()
    for m in model.modules():  # deterministic comparison: no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0

    # --- augmented SFT through TRL's own pipeline
    ds = sft.build_sft_dataset(records)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = sft.sft_config(tmp, total_batch_size=args.rows_per_batch, per_device_batch_size=args.rows_per_batch,
                             use_cpu=True, bf16=False, gradient_checkpointing=False, max_steps=1)
        trainer = sft.make_sft_trainer(model, tok, ds, args=cfg)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    n_comp = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
    sft_tokens, sft_nll = 0, 0.0
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(rows), args.rows_per_batch), desc="SFT micro-batches"):
        batch = trainer.data_collator(rows[start : start + args.rows_per_batch])
        n_here = int((batch["labels"][:, 1:] != -100).sum())
        loss = trainer.compute_loss(model, batch)
        (loss * n_here / n_comp).backward()
        sft_nll += float(loss.detach()) * n_here
        sft_tokens += int(batch["input_ids"].numel())
    t_sft = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)

    # --- var path
    units = sft.var_units(records, tok)
    results = {}
    for strategy in ("tree", "context"):
        t0 = time.perf_counter()
        loss, n_rows = sft.var_sft_loss(
            model, {k: [u[k] for u in units] for k in ("context_ids", "word_ids", "counts")}, strategy=strategy
        )
        loss.backward()
        results[strategy] = (time.perf_counter() - t0, float(loss))
        model.zero_grad(set_to_none=True)
    var_tokens = sum(len(u["context_ids"]) + sum(len(w) for w in u["word_ids"]) for u in units)

    n = len(records)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"model {args.model} + LoRA r=8; {n} training contexts, {len(rows)} augmented rows "
          f"({len(rows) / n:.1f} per context), {sum(len(u['counts']) for u in units)} distinct answers\n")
    print("| path | rows fed | tokens fed | s / context | speed-up | loss (token mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| SFT (TRL, {args.rows_per_batch} rows/batch) | {len(rows)} | {sft_tokens} | {t_sft / n:.3f} | 1.0x "
          f"| {sft_nll / n_comp:.5f} |")
    for strategy, (secs, lval) in results.items():
        print(f"| var ({strategy}) | {len(units)} | {var_tokens if strategy == 'tree' else '-'} | {secs / n:.3f} | "
              f"{t_sft / secs:.1f}x | {lval:.5f} |")
    print(f"\nfull Provo train split (1,892 contexts, 75,793 rows), one epoch at these rates: "
          f"SFT {t_sft / n * 1892 / 3600:.1f} h, var (tree) {results['tree'][0] / n * 1892 / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
