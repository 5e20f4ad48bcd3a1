"""The naive sampler (backend ``"naive"``): ``model.generate(num_return_sequences=num_samples)`` per context.

The reference the shared-prefix sampler is checked and benchmarked against: same prompts, same seeds,
same word cut, every context prefilled ``num_samples`` times.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from ..errors import InputError
from .outcome import _decode_after, word_from_continuation, word_rule_for
from .prompts import _check_sampling_args, _encode_for_sampling, context_seed
from .shared_prefix import sample_next_words


def _options_of(fn, options: dict) -> dict:
    """``options`` completed with ``fn``'s keyword defaults; an unknown name is a one-line error."""
    params = {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise InputError(f"unknown sampling option(s) {', '.join(unknown)} (expected some of {', '.join(params)})")
    return {**params, **options}


def naive_sample_next_words(model, tokenizer, contexts: Sequence[str], num_samples: int = 40, **options
                            ) -> list[list[str]]:
    """Reference sampler: ``model.generate(num_return_sequences=num_samples)`` once per context.

    Takes the keyword options of :func:`sample_next_words` (same defaults; ``batch_size``, ``progress`` and
    ``return_texts`` are accepted for the backend interface, :data:`varylm_hf.sampling.SAMPLERS`, and unused: one context at a
    time, words only). Same outputs in distribution as :func:`sample_next_words` (same prompts, same word
    cutting), but every context is prefilled ``num_samples`` times and all ``max_new_tokens`` are generated.
    Kept for the benchmark and as a cross-check; use :func:`sample_next_words`.
    """
    o = _options_of(sample_next_words, options)
    if o["return_texts"]:
        raise InputError("the naive sampler returns words only (return_texts is for sample_next_words)")
    max_new_tokens, top_k, top_p, temperature = o["max_new_tokens"], o["top_k"], o["top_p"], o["temperature"]
    _check_sampling_args(num_samples, max_new_tokens, temperature, top_k, top_p, 1)
    style, encoded, eos, pad_id = _encode_for_sampling(model, tokenizer, contexts, o["prompt"], o["one_shot_example"],
                                                       max_new_tokens, o["bos"])
    device = next(model.parameters()).device
    rule, chat = word_rule_for(o["normalizer"], o["word_rule"]), style != "plain"
    results = []
    for ctx, ids in zip(contexts, encoded):
        torch.manual_seed(context_seed(o["seed"], ctx))
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                top_k=top_k, top_p=top_p, temperature=temperature, max_new_tokens=max_new_tokens,
                num_return_sequences=num_samples, pad_token_id=pad_id,
            )
        new = out[:, input_ids.shape[1] :].tolist()
        row_words = []
        for seq in new:
            cut = next((k for k, t in enumerate(seq) if t in eos), None)
            ended = cut is not None
            text = _decode_after(tokenizer, [ids[-1]], [seq[:cut] if ended else seq])[0]
            row_words.append(word_from_continuation(text, ended, rule=rule, chat=chat))
        results.append(row_words)
    return results
