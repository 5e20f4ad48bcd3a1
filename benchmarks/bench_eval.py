"""Evaluation speed: shared-prefix sampler vs ``generate(num_return_sequences=40)``, and exact mode.

Measured side by side in one process on the same contexts (consecutive contexts of one Provo test
passage) with the same model, prompt and sampling settings:

* ``naive``: ``model.generate(do_sample=True, top_k=0, num_return_sequences=40)`` once per context
  (every context is prefilled 40 times and all ``max_new_tokens`` are generated);
* ``shared``: :func:`varylm_hf.sampling.sample_next_words` (one prefill per context, the KV cache
  repeated over the 40 samples, each row leaving as soon as its word is complete);
* ``exact``: :func:`varylm_hf.evaluation.exact_word_probs` (``eow`` word probabilities of every human
  word and its capitalised form, no sampling) with the ``tree`` strategy (one trie per context) and
  the ``passage`` strategy (one trie for consecutive contexts of a passage, sharing their prefix).

Usage::

    python benchmarks/bench_eval.py                       # offline SmolLM2 (chat prompt), 8 contexts
    python benchmarks/bench_eval.py --model gpt2-random   # random GPT-2-small-sized model, plain prompt
    python benchmarks/bench_eval.py --contexts 16 --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def _load(name: str):
    if name == "gpt2-random":
        import torch
        from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

        from varylm_hf.modeling import OFFLINE_MODEL, load_tokenizer

        # the SmolLM2 tokenizer (49k vocabulary, offline) with a GPT-2-small-sized random model
        tok = load_tokenizer(OFFLINE_MODEL)
        tok.chat_template = None
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=12, n_embd=768, n_head=12)).eval()
        del AutoTokenizer
        return model, tok
    from varylm_hf.modeling import load_model_and_tokenizer

    return load_model_and_tokenizer(name, device="cpu")


def main(argv=None) -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-gguf", help="smollm2-gguf (default), gpt2-random, or a model path")
    parser.add_argument("--contexts", type=int, default=8, help="number of contexts (default 8)")
    parser.add_argument("--num-samples", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="contexts per batch of the shared sampler")
    parser.add_argument("--prompt", default="auto")
    parser.add_argument("--offset", type=int, default=16, help="first test context (default 16: passage 6, words 18-)")
    args = parser.parse_args(argv)

    import torch

    from varylm_hf.data import load_provo, split_records
    from varylm_hf.evaluation import exact_word_probs
    from varylm_hf.sampling import (
        build_prompts,
        encode_prompts,
        naive_sample_next_words,
        resolve_prompt_style,
        sample_next_words,
    )

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    test = split_records(load_provo(), "paper")["test"]
    # consecutive contexts of one passage (as an evaluation run meets them: the split is in passage order)
    records = test[args.offset : args.offset + args.contexts]
    contexts = [r["context"] for r in records]
    model, tok = _load(args.model)
    style = resolve_prompt_style(tok, args.prompt)
    prompt_tokens = [len(x) for x in encode_prompts(tok, build_prompts(tok, contexts, style), chat=style != "plain")]
    kw = dict(num_samples=args.num_samples, prompt=style, max_new_tokens=args.max_new_tokens, seed=0)

    # warm-up (first-call overheads)
    sample_next_words(model, tok, contexts[:1], **{**kw, "num_samples": 2})
    results = {}
    t0 = time.perf_counter()
    naive = naive_sample_next_words(model, tok, contexts, **kw)
    results["naive generate(num_return_sequences)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    shared = sample_next_words(model, tok, contexts, batch_size=args.batch_size, **kw)
    results["shared-prefix sampler"] = time.perf_counter() - t0
    for strategy in ("tree", "passage"):
        t0 = time.perf_counter()
        exact_word_probs(model, tok, records, prompt=style, strategy=strategy)
        results[f"exact (eow, {strategy})"] = time.perf_counter() - t0

    fail = lambda rows: sum(w == "<no-word>" for r in rows for w in r) / sum(len(r) for r in rows)  # noqa: E731
    print(f"model {args.model} | prompt {style} | {len(contexts)} contexts, prompt tokens "
          f"{min(prompt_tokens)}-{max(prompt_tokens)} (mean {sum(prompt_tokens) / len(prompt_tokens):.0f}) | "
          f"{args.num_samples} samples | max_new_tokens {args.max_new_tokens} | "
          f"{torch.get_num_threads()} threads | {platform.processor() or platform.machine()}")
    print(f"no-word rate: naive {fail(naive):.3f}, shared {fail(shared):.3f}")
    print()
    print("| method | seconds | contexts/s | speed-up vs naive |")
    print("|---|---|---|---|")
    base = results["naive generate(num_return_sequences)"]
    for name, sec in results.items():
        print(f"| {name} | {sec:.2f} | {len(contexts) / sec:.2f} | {base / sec:.1f}x |")
    best = min(results["exact (eow, tree)"], results["exact (eow, passage)"])
    print(f"\nexact (best strategy) vs shared-prefix sampling: {results['shared-prefix sampler'] / best:.1f}x")


if __name__ == "__main__":
    main()
