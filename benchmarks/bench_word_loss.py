"""Speed of the word-level loss (forward + backward) under each scoring strategy.

Times L_Var on Provo training batches of 16 contexts on a GPT-2-small-sized random model and on
the offline SmolLM2-135M, for both word-probability definitions, all strategies side by side in
one run:

* pair     one sequence per (context, word)          (timed on the first --pair_contexts contexts)
* context  one forward per context, words reuse its KV cache
* tree     one 4D-mask forward, a trie per context   (the trainer's default, shuffled batches)
* passage  one 4D-mask forward, one trie per batch   (contexts of a passage share their prefix)

Passage-grouped batches (16 consecutive contexts of one passage, as with ``group_by_passage``)
are scored by every strategy; ``tree`` is also timed on a shuffled batch. It prints contexts/s,
tokens fed to the model per context, speed-ups over ``pair`` and ``context``, and the floor:
6 x parameters x (tokens of the passage trie) / measured matmul FLOP rate.

    OMP_NUM_THREADS=2 python benchmarks/bench_word_loss.py            # ~4 minutes on 2 cores
    python benchmarks/bench_word_loss.py --models gpt2-small --batches 2
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from varylm_hf.data import label_distribution, load_provo, split_records
from varylm_hf.scoring import _build_forest, encode_batch, score_token_ids, word_loss, word_start_mask


def matmul_flops(dim: int = 768, tokens: int = 1024, repeats: int = 5) -> float:
    """Measured float32 FLOP/s of a (tokens x dim) @ (dim x 4 dim) matmul, forward-like."""
    a, b = torch.randn(tokens, dim), torch.randn(dim, 4 * dim)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * tokens * dim * 4 * dim * repeats / (time.perf_counter() - t)


def load_model(name: str):
    """(model, tokenizer): 'gpt2-small' = GPT-2 small config, random weights, SmolLM2's BPE tokenizer."""
    from varylm_hf.modeling import load_model_and_tokenizer, load_tokenizer

    if name == "smollm2":
        model, tok = load_model_and_tokenizer("smollm2-gguf", device="cpu")
        return model, tok
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = load_tokenizer("smollm2-gguf")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), attn_pdrop=0, resid_pdrop=0, embd_pdrop=0)).eval()
    return model, tok


def batches(records, n: int, size: int, seed: int = 0):
    """n passage-grouped batches (consecutive contexts of one passage) and n shuffled batches."""
    rng = random.Random(seed)
    by_passage: dict = {}
    for r in records:
        by_passage.setdefault(r["passage_id"], []).append(r)
    grouped = []
    for pid in rng.sample(sorted(by_passage), n):
        recs = by_passage[pid]
        start = rng.randrange(0, max(1, len(recs) - size))
        grouped.append(recs[start: start + size])
    shuffled = [rng.sample(records, size) for _ in range(n)]
    return grouped, shuffled


def encode(tok, model, recs, eow):
    dists = [label_distribution(r, "all") for r in recs]
    ctx, wids = encode_batch(tok, [r["context"] for r in recs], [[w for w, _ in d] for d in dists], model=model, eow=eow)
    return ctx, wids, [torch.tensor([p for _, p in d]) for d in dists]


def tokens_fed(strategy, ctx, wids, eow):
    """Tokens the model reads under a strategy (no padding counted)."""
    inp = lambda w: len(w) if eow else len(w) - 1  # noqa: E731
    if strategy == "pair":
        return sum(len(c) + inp(w) for c, ws in zip(ctx, wids) for w in ws)
    if strategy == "context":
        return sum(len(c) + sum(inp(w) for w in ws) for c, ws in zip(ctx, wids))
    return len(_build_forest(ctx, wids, eow, merge_contexts=strategy == "passage")[0])


def time_loss(model, ctx, wids, probs, strategy, eow, mask, repeats=1):
    """Seconds for forward + backward of L_Var on this batch."""
    best = float("inf")
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        logq = score_token_ids(model, ctx, wids, definition="eow" if eow else "paper", word_start_mask=mask,
                               strategy=strategy)
        word_loss(logq, probs).backward()
        best = min(best, time.perf_counter() - t)
    return best


def run(args):
    records = split_records(load_provo(), "paper")["train"]
    grouped, shuffled = batches(records, args.batches, args.batch_size)
    flops = matmul_flops()
    print(f"matmul rate: {flops / 1e9:.1f} GFLOP/s (float32, {torch.get_num_threads()} threads)")
    rows = []
    for name in args.models:
        model, tok = load_model(name)
        n_params = sum(p.numel() for p in model.parameters())
        mask = word_start_mask(tok, model.get_output_embeddings().weight.shape[0])
        for definition in args.definitions:
            eow = definition == "eow"
            res = {s: [0.0, 0, 0] for s in ("pair", "context", "tree", "passage", "tree (shuffled)")}  # secs, ctxs, toks
            floor = 0.0
            for g, s in zip(grouped, shuffled):
                ctx, wids, probs = encode(tok, model, g, eow)
                time_loss(model, ctx[:1], wids[:1], probs[:1], "tree", eow, mask)  # warm-up
                k = args.pair_contexts
                for strat, sub in (("pair", slice(0, k)), ("context", slice(None)), ("tree", slice(None)),
                                   ("passage", slice(None))):
                    c, w, p = ctx[sub], wids[sub], probs[sub]
                    res[strat][0] += time_loss(model, c, w, p, strat, eow, mask)
                    res[strat][1] += len(c)
                    res[strat][2] += tokens_fed(strat, c, w, eow)
                floor += 6 * n_params * tokens_fed("passage", ctx, wids, eow) / flops
                ctx, wids, probs = encode(tok, model, s, eow)
                r = res["tree (shuffled)"]
                r[0] += time_loss(model, ctx, wids, probs, "tree", eow, mask)
                r[1] += len(ctx)
                r[2] += tokens_fed("tree", ctx, wids, eow)
            n_ctx = res["passage"][1]
            floor_rate = n_ctx / floor
            for strat, (secs, n, toks) in res.items():
                rate = n / secs
                rows.append({"model": name, "definition": definition, "strategy": strat, "ctx_per_s": rate,
                             "tokens_per_ctx": toks / n, "vs_pair": rate / (res["pair"][1] / res["pair"][0]),
                             "vs_context": rate / (res["context"][1] / res["context"][0]),
                             "vs_floor": floor_rate / rate})
            print(f"  done {name} {definition}")
        del model
    header = "| model | def | strategy | contexts/s | tokens/context | x pair | x context | time / floor |"
    print("\n" + header + "\n|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['definition']} | {r['strategy']} | {r['ctx_per_s']:.2f} | "
              f"{r['tokens_per_ctx']:.0f} | {r['vs_pair']:.1f} | {r['vs_context']:.1f} | {r['vs_floor']:.1f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt2-small", "smollm2"], choices=["gpt2-small", "smollm2"])
    parser.add_argument("--definitions", nargs="+", default=["paper", "eow"], choices=["paper", "eow"])
    parser.add_argument("--batches", type=int, default=1, help="batches timed per strategy (an epoch is 119)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--pair_contexts", type=int, default=3, help="contexts of each batch timed with `pair`")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
