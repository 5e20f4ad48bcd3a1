"""The instruct recipe's training paths side by side: TRL SFT on augmented rows, per-context ``var``, passage trie.

Three ways to compute the same objective (``sum_c sum_w count(w|c) * -log q(w + end-of-turn | chat prompt)``,
token mean) with LoRA on the offline SmolLM2:

* ``sft``: TRL SFTTrainer's own tokenisation, collator and ``compute_loss`` on the augmented rows (one per
  human answer, ~40 per context), in micro-batches of ``--rows_per_batch``;
* ``var, per context``: :func:`varylm_hf.training.var_sft.var_sft_loss` on one context per forward (``strategy="tree"``):
  the chat prompt once, each distinct answer once as a branch (the batch of the paper's 32 rows is one
  Provo context);
* ``var, passage trie``: ``strategy="passage"`` on ``k`` contexts of one passage per forward: their prompts
  share the system turn, the instruction and the passage text, computed once.

Part 1 (loss): on ``--sft_contexts`` contexts of one training passage, forward + backward through each path;
the token-mean losses over the same rows must agree (|difference| <= 1e-5).
Part 2 (speed): forward + backward over every context of ``--passages`` training passages (all answers, as
an epoch of FT all sees them; and the majority answer only, one row per context), seconds per context, and
one epoch of the train split (1,892 contexts) projected from it.
Part 3 (``--trainer_contexts N``, off by default): the real :func:`~varylm_hf.training.instruct.train_instruct`
(Trainer, AdamW, LoRA dropout) at the paper's 32 rows (one context per step) on N random training contexts, float32
and bfloat16 autocast alternating ``--trainer_repeats`` times in one process, with the matrix-product FLOPs of the
float32 run (``torch.profiler``) and the best float32 product rate at the step's shapes: the floor of an epoch.
Usage (2-core CPU, ~4 min; part 3 adds ~2 min per 40 contexts and repeat)::

    OMP_NUM_THREADS=2 python benchmarks/bench_sft.py [--trainer_contexts 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time

from _matmul import best_float32_rate  # benchmarks/ is on sys.path when a script here runs

EPOCH_CONTEXTS = 1892


def _loss_and_backward(model, units, strategy):
    from varylm_hf.training.var_sft import var_sft_loss

    batch = {k: [u[k] for u in units] for k in ("context_ids", "word_ids", "counts")}
    loss, _ = var_sft_loss(model, batch, strategy=strategy)
    loss.backward()
    n_tokens = sum(n * len(w) for u in units for n, w in zip(u["counts"], u["word_ids"]))
    return float(loss.detach()) * n_tokens, n_tokens


def _timed(model, units, per_step, strategy):
    """Seconds for forward + backward over ``units`` in steps of ``per_step`` contexts; summed NLL and tokens."""
    nll = tokens = 0.0
    t0 = time.perf_counter()
    for s in range(0, len(units), per_step):
        a, b = _loss_and_backward(model, units[s : s + per_step], strategy)
        nll, tokens = nll + a, tokens + b
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, nll / tokens


def main(argv=None) -> int:
    """Run both parts and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-gguf")
    p.add_argument("--sft_contexts", type=int, default=3, help="contexts of part 1 (TRL SFT is slow)")
    p.add_argument("--rows_per_batch", type=int, default=8, help="TRL SFT micro-batch (rows)")
    p.add_argument("--passages", type=int, default=2, help="training passages of part 2")
    p.add_argument("--contexts_per_step", type=int, nargs="+", default=[4, 8],
                   help="passage-trie batches of part 2 (contexts of one passage per step)")
    p.add_argument("--trainer_contexts", type=int, default=0, help="part 3: random training contexts (0: skip)")
    p.add_argument("--trainer_repeats", type=int, default=2, help="part 3: float32/bf16 pairs")
    p.add_argument("--skip_parts_1_2", action="store_true", help="run part 3 only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.skip_parts_1_2:
        return _trainer_part(args)

    import torch
    from peft import get_peft_model
    from tqdm.auto import tqdm

    from varylm_hf.data import load_provo, split_records
    from varylm_hf.modeling import load_model_and_tokenizer, unmark_gguf_quantization
    from varylm_hf.training.adapters import lora_config
    from varylm_hf.training.instruct import make_sft_trainer
    from varylm_hf.training.rows import build_sft_dataset, var_units
    from varylm_hf.training.sft_config import VarSFTConfig

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train = split_records(load_provo())["train"]
    by_passage: dict = {}
    for r in train:
        by_passage.setdefault(r["passage_id"], []).append(r)
    passages = rng.sample(sorted(by_passage), args.passages)
    model, tok = load_model_and_tokenizer(args.model)
    unmark_gguf_quantization(model)
    model = get_peft_model(model, lora_config(model))
    model.train()
    for m in model.modules():  # deterministic comparison: no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0

    # --- part 1: the same loss three ways
    first = by_passage[passages[0]]
    records = [first[i] for i in sorted(rng.sample(range(len(first)), args.sft_contexts))]
    ds = build_sft_dataset(records)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = VarSFTConfig(tmp, recipe="sft", batch_size=args.rows_per_batch, per_device_batch_size=args.rows_per_batch,
                           use_cpu=True, bf16=False, activation_checkpointing=False, max_steps=1)
        trainer = make_sft_trainer(model, tok, ds, args=cfg)
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
    units = var_units(records, tok)
    part1 = [("SFT (TRL, %d rows/micro-batch)" % args.rows_per_batch, len(rows), sft_tokens, t_sft, sft_nll / n_comp)]
    from varylm_hf.scoring import _build_forest

    ctx_ids, word_ids = [u["context_ids"] for u in units], [u["word_ids"] for u in units]
    t, loss = _timed(model, units, 1, "tree")
    part1.append(("var, per context", len(units), len(_build_forest(ctx_ids, word_ids, False, False)[0]), t, loss))
    t, loss = _timed(model, units, len(units), "passage")
    part1.append((f"var, passage trie ({len(units)} contexts in one step)", 1,
                  len(_build_forest(ctx_ids, word_ids, False, True)[0]), t, loss))

    # --- part 2: seconds per context over whole passages
    recs2 = [r for pid in passages for r in by_passage[pid]]
    part2 = []
    for label_mode in ("all", "majority"):
        units2 = var_units(recs2, tok, label_mode)
        rows_per_ctx = sum(sum(u["counts"]) for u in units2) / len(units2)
        plans = [("per context", 1, "tree")] + [(f"passage trie, {k} contexts/step", k, "passage")
                                                for k in args.contexts_per_step]
        if label_mode == "majority":  # the paper's 32 rows = 32 one-answer contexts
            plans = [("per context", 1, "tree"), ("passage trie, 32 contexts/step", 32, "passage")]
        for name, k, strategy in tqdm(plans, desc=f"part 2 ({label_mode})"):
            secs = 0.0
            for pid in passages:  # steps never cross a passage (grouped batches)
                us = [u for u in units2 if u["passage_id"] == pid]
                rng.shuffle(us)
                secs += _timed(model, us, k, strategy)[0]
            part2.append((label_mode, name, k * rows_per_ctx, secs / len(units2), len(units2)))

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"model {args.model} + LoRA r=8 (seven projections), fp32, no dropout; training passages {passages}\n")
    print(f"Part 1: {len(records)} contexts of passage {passages[0]}, {len(rows)} augmented rows, "
          f"{sum(len(u['counts']) for u in units)} distinct answers; forward + backward\n")
    print("| path | sequences or tries | tokens fed | s / context | speed-up vs SFT | loss (token mean) | loss - SFT |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = part1[0][4]
    for name, seqs, toks, secs, loss in part1:
        print(f"| {name} | {seqs} | {toks} | {secs / len(records):.3f} | {t_sft / secs:.1f}x | {loss:.6f} | "
              f"{loss - ref:+.1e} |")
    print(f"\nPart 2: every context of passages {passages}; forward + backward; one epoch = {EPOCH_CONTEXTS} "
          "contexts at the same rate\n")
    print("| labels | path | rows / step | s / context | one epoch (min) | speed-up vs per context |")
    print("|---|---|---:|---:|---:|---:|")
    base = {}
    for label_mode, name, rows_step, spc, n in part2:
        base.setdefault(label_mode, spc)
        print(f"| {label_mode} ({n} contexts) | {name} | {rows_step:.0f} | {spc:.3f} | {spc * EPOCH_CONTEXTS / 60:.1f} "
              f"| {base[label_mode] / spc:.2f}x |")
    return _trainer_part(args) if args.trainer_contexts else 0


def _trainer_part(args) -> int:
    """Part 3: train_instruct at one context per step, float32 against bf16 autocast, and the float32 floor."""
    import copy

    import torch
    from torch.profiler import ProfilerActivity, profile

    from varylm_hf.data import load_provo, split_records
    from varylm_hf.modeling import load_model_and_tokenizer
    from varylm_hf.scoring import _build_forest
    from varylm_hf.training.instruct import train_instruct
    from varylm_hf.training.rows import var_units
    from varylm_hf.training.sft_config import VarSFTConfig

    sample = random.Random(args.seed).sample(split_records(load_provo())["train"], args.trainer_contexts)
    model, tok = load_model_and_tokenizer(args.model)
    units = var_units(sample, tok)
    fed = sum(len(_build_forest([u["context_ids"]], [u["word_ids"]], False, False)[0]) for u in units) / len(units)
    prompt = sum(len(u["context_ids"]) for u in units) / len(units)
    rows, flops, shares = [], None, {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.trainer_repeats):
            for bf16 in (False, True):
                cfg = VarSFTConfig(output_dir=tmp, recipe="var", batch_size=32, num_train_epochs=1, bf16=bf16,
                                   use_cpu=True, report_to="none", logging_steps=10**6, disable_tqdm=True,
                                   seed=args.seed)
                if flops is None:  # the first float32 run, profiled: its matrix-product FLOPs
                    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
                        trainer = train_instruct(copy.deepcopy(model), tok, sample, None, cfg)
                    events = prof.key_averages()
                    flops = sum(e.flops for e in events if e.flops)
                    total = sum(e.self_cpu_time_total for e in events)
                    for label, keys in (("matrix products", ("aten::mm", "aten::addmm", "aten::bmm")),
                                        ("dropout masks (bernoulli_)", ("aten::bernoulli_",)),
                                        ("attention (sdpa kernels)", ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                         "aten::_scaled_dot_product_flash_attention_for_cpu_backward"))):
                        shares[label] = sum(e.self_cpu_time_total for e in events if e.key in keys) / total
                    del prof, events  # the trace of 40 steps holds ~15 GB
                    continue
                trainer = train_instruct(copy.deepcopy(model), tok, sample, None, cfg)
                end = next(h for h in trainer.state.log_history if "train_runtime" in h)
                rows.append((rep, "bf16 autocast" if bf16 else "float32", end["train_runtime"] / len(sample),
                             end["train_loss"]))
    rate = best_float32_rate(112, reps=300)
    rate_bf16 = best_float32_rate(112, reps=300, dtype=torch.bfloat16)
    per_ctx = flops / len(sample)
    print(f"\nPart 3: train_instruct, var recipe, 32 rows (one context per step), {len(sample)} random training "
          f"contexts (seed {args.seed}); the first float32 run was profiled (not timed)\n")
    print("| repeat | precision | s / step | one epoch (min) | mean training loss |")
    print("|---:|---|---:|---:|---:|")
    for rep, name, sps, loss in rows:
        print(f"| {rep} | {name} | {sps:.3f} | {sps * EPOCH_CONTEXTS / 60:.1f} | {loss:.6f} |")
    print(f"\nmatrix products: {per_ctx / 1e9:.1f} GFLOP per context, {per_ctx * EPOCH_CONTEXTS / 1e12:.1f} TFLOP per "
          f"epoch; best float32 rate here {rate:.0f} GFLOP/s -> {per_ctx * EPOCH_CONTEXTS / rate / 1e9 / 60:.1f} min "
          "per epoch for the products alone")
    print(f"tokens fed per context: {fed:.1f} ({prompt:.1f} of chat prompt); bf16 product rate here {rate_bf16:.0f} "
          "GFLOP/s")
    print("share of the profiled float32 run's CPU time: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
