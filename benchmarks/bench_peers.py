"""``varylm score`` against its peers, side by side in one process on the same model.

* cloze pairs: every (context, human answer) of Provo test passages 6 and 13 (1,738 pairs), scored by
  varylm's passage strategy (``paper``, ``eow``, ``pm``) and by minicons
  ``IncrementalLMScorer.conditional_score`` (without and with its ``bow_correction``; the batch size
  that is fastest of ``--minicons-batches``);
* running text: the two passages as text, scored by :func:`varylm_hf.surprisal.text_surprisals` and by
  wordsprobability 0.17 (corrected and "buggy" surprisal), words per second.

Both peers fix their model lists to Hub names; they get the local model here: minicons takes a model
object and tokenizer, wordsprobability a small subclass of its model class. Every peer is conditioned
on the same first token as varylm (minicons: ``bos_token=True`` with the tokenizer's BOS, so varylm is
run with that BOS for the pairs; wordsprobability: its ``bos_token_id`` set to varylm's ``auto`` token).
Prints a table (items/s and the ratio to the peer) and the largest differences in bits.

Usage::

    python benchmarks/bench_peers.py                  # offline SmolLM2 (~20 s to load), passages 6 and 13
    python benchmarks/bench_peers.py --limit 4        # a quick check: 4 contexts, 1 text
    python benchmarks/bench_peers.py --flops          # varylm only: matrix-product FLOPs and their float32 floor
    python benchmarks/bench_peers.py --interleave 8   # eow vs minicons' bow correction, alternating 8 rounds
    python benchmarks/bench_peers.py --text-only --repeat 5   # running text only, best of 5 each
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

from _matmul import best_float32_rate  # benchmarks/ is on sys.path when a script here runs

LN2 = math.log(2)


def _timed(fn, repeat=1):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _minicons(model, tok):
    """``run(contexts, words, batch, bow)``: minicons' ``conditional_score`` (summed over a word's tokens) in
    batches, on the local model (it sets a pad token on the tokenizer it is given: a copy)."""
    import copy

    from minicons import scorer

    lm = scorer.IncrementalLMScorer(model, "cpu", tokenizer=copy.deepcopy(tok))

    def run(pre, stim, bs, bow):
        out = []
        for s in range(0, len(pre), bs):
            out += lm.conditional_score(pre[s:s + bs], stim[s:s + bs], reduction=lambda x: x.sum(0).item(),
                                        bos_token=True, bow_correction=bow)
        return out

    return run


def _interleaved(model, tok, pre, stim, cost, score, args) -> int:
    """varylm ``eow`` on all pairs and minicons' bow correction on one K-th of them, alternating K times (and varylm
    once more at the end), so that both are sampled over the same minutes of a machine whose speed drifts."""
    import statistics

    run_minicons = _minicons(model, tok)
    bs, k = args.minicons_batches[0], args.interleave
    n = len(pre)
    bounds = [round(i * n / k) for i in range(k + 1)]  # a round's share of minicons' work: its share of ``cost``

    def ours():
        return _timed(lambda: score("eow"))[0]

    ours()  # warm-up (untimed): the masks and the allocator
    t_ours, t_theirs, ratios = [], 0.0, []
    for a, b in zip(bounds, bounds[1:]):
        t_ours.append(ours())
        dt, _ = _timed(lambda: run_minicons(pre[a:b], stim[a:b], bs, True))
        t_theirs += dt
        ratios.append(dt * sum(cost) / sum(cost[a:b]) / t_ours[-1])
    t_ours.append(ours())
    med = statistics.median(t_ours)
    print(f"\n{n} pairs, {k} rounds; varylm eow (passage strategy, all pairs each round): "
          f"median {med:.2f} s (min {min(t_ours):.2f}, max {max(t_ours):.2f}, {len(t_ours)} runs); "
          f"minicons bow_correction (batch {bs}), one {k}-th of the pairs per round: {t_theirs:.2f} s in all")
    print(f"ratio {t_theirs / med:.1f}x (minicons' total / varylm's median); per round (minicons' time scaled by "
          f"its share of the pairs' tokens / varylm's run) min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x, "
          f"max {max(ratios):.1f}x")
    return 0


def _flops_table(run, rows_table, model, cost) -> int:
    """Matrix-product FLOPs of each definition (torch.profiler) against its time and the float32 floor, then where
    the profiled time goes: the output head's products (an operand of the head's (vocab, hidden) shape or its
    transpose), the other products, attention; and what minicons' full logits at every position would cost."""
    from torch.profiler import ProfilerActivity, profile

    head_shape = list(model.get_output_embeddings().weight.shape)
    params = sum(p.numel() for p in model.parameters())  # a tied head counted once: its product, not the lookup
    print(f"minicons' sequences: {sum(cost)} tokens (BOS + context + answer, unpadded); at 2 x {params / 1e6:.1f}M "
          f"FLOP per token that is {2 * params * sum(cost) / 1e12:.1f} TFLOP of products\n")

    rate = best_float32_rate(256)
    print(f"best float32 product rate here: {rate:.0f} GFLOP/s\n")
    print("| definition | seconds (timed above) | matrix-product GFLOP | floor at that rate (s) | time / floor |")
    print("|---|---:|---:|---:|---:|")
    shares = []
    for _, name, _, secs in rows_table:
        definition = name.split("(")[1].rstrip(")")
        with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
            run(definition)
        flops = {(e.key, str(e.input_shapes)): (e.flops or 0) / 1e9 for e in prof.key_averages(group_by_input_shape=True)}
        gflop = sum(flops.values())
        print(f"| {definition} | {secs:.2f} | {gflop:.0f} | {gflop / rate:.2f} | {secs / (gflop / rate):.2f}x |")
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:  # times: without FLOP counting
            run(definition)
        events = prof.key_averages(group_by_input_shape=True)
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        split = {"head": [0.0, 0.0], "other": [0.0, 0.0]}
        attention = 0.0
        for e in events:
            if e.key in ("aten::mm", "aten::addmm", "aten::bmm"):
                head = any(list(shape) in (head_shape, head_shape[::-1]) for shape in e.input_shapes if shape)
                part = split["head" if head else "other"]
                part[0] += e.self_cpu_time_total / 1e6
                part[1] += flops.get((e.key, str(e.input_shapes)), 0.0)
            elif "scaled_dot_product" in e.key:
                attention += e.self_cpu_time_total / 1e6
        shares.append((definition, total, split, attention))
    print("\nwhere the time goes (a second profile, without FLOP counting):\n")
    print("| definition | profiled s | head products: s (GFLOP/s) | other products: s (GFLOP/s) | attention s | rest s |")
    print("|---|---:|---:|---:|---:|---:|")
    for definition, total, split, attention in shares:
        cells = [f"{t:.2f} ({f / t:.0f})" if t else "0" for t, f in split.values()]
        rest = total - sum(t for t, _ in split.values()) - attention
        print(f"| {definition} | {total:.2f} | {cells[0]} | {cells[1]} | {attention:.2f} | {rest:.2f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-gguf", help="model for load_model_and_tokenizer (default: smollm2-gguf)")
    ap.add_argument("--passages", type=int, nargs="+", default=[6, 13], help="Provo test passages (default: 6 13)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N contexts (and texts: ceil(N/50)); 0 = all")
    ap.add_argument("--batch-size", type=int, default=128, help="varylm: contexts per forward (default 128)")
    ap.add_argument("--minicons-batches", type=int, nargs="+", default=[8, 32, 64], help="minicons batch sizes tried")
    ap.add_argument("--repeat", type=int, default=1, help="time each run this many times, keep the best")
    ap.add_argument("--flops", action="store_true", help="count varylm's matrix-product FLOPs per definition and "
                    "print the float32 floor at this machine's best product rate; skips the peers")
    ap.add_argument("--text-only", action="store_true", help="only the running text: varylm against wordsprobability "
                    "(with --repeat: best of N each)")
    ap.add_argument("--interleave", type=int, default=0, metavar="K",
                    help="only varylm eow against minicons' bow correction (batch: the first --minicons-batches): K rounds, "
                    "each varylm on all pairs then minicons on one K-th of them, so that both see the same machine state")
    args = ap.parse_args(argv)

    import torch

    from varylm_hf.conditioning import first_token_id
    from varylm_hf.data import load_provo, split_records
    from varylm_hf.modeling import load_model_and_tokenizer
    from varylm_hf.scoring import score_words
    from varylm_hf.surprisal import text_surprisals

    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(args.model, device="cpu")
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    records = [r for r in split_records(load_provo(), "paper")["test"] if r["passage_id"] in set(args.passages)]
    if args.limit:
        records = records[: args.limit]
    contexts = [r["context"] for r in records]
    answers = [[a["word"] for a in r["answers"]] for r in records]
    n_pairs = sum(len(a) for a in answers)
    # running text: each passage as the last context + its corpus word
    last = {}
    for r in records:
        last[r["passage_id"]] = r["context"] + " " + r["corpus_word"]
    texts = list(last.values())
    rows_table = []

    # ---------------------------------------------------------------- cloze pairs: varylm vs minicons
    bos = tok.bos_token  # minicons' bos_token=True prepends this token: condition varylm on it too

    def score(definition):  # varylm's passage strategy on every pair, as `varylm score` runs it
        return score_words(model, tok, contexts, answers, definition=definition, strategy="passage",
                           batch_size=args.batch_size, bos=bos, progress=False)

    pre = [c for c, ws in zip(contexts, answers) for _ in ws]
    stim = [w for ws in answers for w in ws]
    cost = [1 + len(tok(c + " " + w, add_special_tokens=False)["input_ids"]) for c, w in zip(pre, stim)]  # + BOS
    if args.interleave:
        return _interleaved(model, tok, pre, stim, cost, score, args)
    ours, peers = {}, {}
    if not args.text_only:
        score("eow")  # warm-up (untimed): the first large run of a process is slower
        for definition in ("paper", "eow", "pm"):
            dt, vals = _timed(lambda d=definition: score(d), args.repeat)
            ours[definition] = [float(v) for per in vals for v in per]
            rows_table.append(("pairs", f"varylm passage ({definition})", n_pairs, dt))
        if args.flops:
            return _flops_table(score, rows_table, model, cost)
        try:
            run = _minicons(model, tok)
            for bow in (False, True):
                best = None
                for bs in args.minicons_batches:
                    dt, vals = _timed(lambda b=bs, c=bow: run(pre, stim, b, c), args.repeat)
                    if best is None or dt < best[0]:
                        best = (dt, bs, vals)
                peers[bow] = best[2]
                rows_table.append(("pairs", f"minicons conditional_score (bow_correction={bow}, batch {best[1]})",
                                   n_pairs, best[0]))
        except ImportError:
            print("minicons is not installed: pip install minicons==0.3.39")

    # ---------------------------------------------------------------- running text: varylm vs wordsprobability
    dt, text_rows = _timed(lambda: text_surprisals(model, tok, texts, progress=False), args.repeat)
    rows_table.append(("words", "varylm score --text (one pass per text)", len(text_rows), dt))
    wp_df = None
    try:
        import pandas as pd
        from wordsprobability.main import agg_surprisal_per_word
        from wordsprobability.models.bow_lm import GPT2BaseModel

        class LocalModel(GPT2BaseModel):  # its model list is fixed to Hub names: hand it the local model
            model_name = args.model

            def _initialise_model(self):
                return model, tok

        wp = LocalModel()
        wp.bos_token_id = first_token_id(tok, "auto")  # the same first token as varylm (not a chat marker)

        def run_wp():
            frames = []
            for i, t in enumerate(texts):
                res, offsets = wp.get_predictions(t.strip())
                df = pd.DataFrame(res)
                df["text_id"], df["offsets"] = i, offsets
                frames.append(df)
            return agg_surprisal_per_word(pd.concat(frames), "gpt2-small", return_buggy_surprisals=True)

        dt, wp_df = _timed(run_wp, args.repeat)
        rows_table.append(("words", "wordsprobability get_surprisal_per_word", len(wp_df), dt))
    except ImportError:
        print("wordsprobability is not installed: pip install wordsprobability==0.17")

    # ---------------------------------------------------------------- table
    print(f"\n{len(records)} contexts of passages {' '.join(map(str, args.passages))}: {n_pairs} (context, answer) "
          f"pairs; {len(texts)} texts, {len(text_rows)} words\n")
    print("| items | tool | n | seconds | items/s |")
    print("|---|---|---:|---:|---:|")
    for kind, name, n, dt in rows_table:
        print(f"| {kind} | {name} | {n} | {dt:.2f} | {n / dt:.1f} |")
    speed = {name: n / dt for _, name, n, dt in rows_table}
    print()
    mc = {bow: next((v for k, v in speed.items() if k.startswith(f"minicons conditional_score (bow_correction={bow}")), None)
          for bow in (False, True)}
    if mc[False]:
        print(f"ratio varylm paper / minicons plain: {speed['varylm passage (paper)'] / mc[False]:.1f}x")
    if mc[True]:
        print(f"ratio varylm eow / minicons bow_correction: {speed['varylm passage (eow)'] / mc[True]:.1f}x; "
              f"pm / bow_correction: {speed['varylm passage (pm)'] / mc[True]:.1f}x")
    if wp_df is not None:
        print(f"ratio varylm --text / wordsprobability: "
              f"{speed['varylm score --text (one pass per text)'] / speed['wordsprobability get_surprisal_per_word']:.1f}x")
    # ---------------------------------------------------------------- agreement
    print()
    if peers:
        d = max(abs(a - b) for a, b in zip(ours["paper"], peers[False])) / LN2
        print(f"max |varylm paper - minicons plain| = {d:.2e} bits over {n_pairs} pairs")
        d_eow = max(abs(a - b) for a, b in zip(ours["eow"], peers[True])) / LN2
        d_pm = max(abs(a - b) for a, b in zip(ours["pm"], peers[True])) / LN2
        print(f"max |varylm eow - minicons bow_correction| = {d_eow:.3f} bits, |pm - bow_correction| = {d_pm:.3f} bits "
              "(different definitions: docs/surprisal.md)")
    if wp_df is not None and len(wp_df) == len(text_rows):
        dc = max(abs(a / LN2 - r["surprisal_bits"]) for a, r in zip(wp_df["surprisal"], text_rows))
        db = max(abs(a / LN2 - r["surprisal_paper_bits"]) for a, r in zip(wp_df["surprisal_buggy"], text_rows))
        print(f"max |varylm - wordsprobability| = {dc:.2e} bits corrected, {db:.2e} bits uncorrected "
              f"over {len(text_rows)} words")
    elif wp_df is not None:
        print(f"word counts differ: varylm {len(text_rows)}, wordsprobability {len(wp_df)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
