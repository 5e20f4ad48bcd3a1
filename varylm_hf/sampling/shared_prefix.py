"""The shared-prefix sampler (backend ``"shared-prefix"``, the default): one prefill per context, its cache shared.

The prompts of a batch of contexts are encoded once (left-padded, one forward pass); the key/value
cache is then repeated ``num_samples`` times and the samples are decoded together, each row leaving
the batch as soon as its word is complete. The naive way (``generate(num_return_sequences=40)`` per
context, :func:`varylm_hf.sampling.naive.naive_sample_next_words`) prefills every context 40 times;
see ``benchmarks/bench_eval.py``. Prompts, seeds and the word cut are those of every backend
(:mod:`varylm_hf.sampling.prompts`, :mod:`varylm_hf.sampling.outcome`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..data.normalize import Normalizer
from ..data.words import WordRule
from .outcome import _decode_after, lead_of, word_from_continuation, word_rule_for
from .prompts import _check_sampling_args, _encode_for_sampling, context_seed


def _filter_logits(logits, temperature: float, top_k: int, top_p: float):
    """Temperature, top-k and nucleus filtering of ``logits`` (rows, vocab) -> probabilities."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        drop = (cum - sorted_p) > top_p  # keep the smallest prefix with mass >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs



def sample_next_words(
    model,
    tokenizer,
    contexts: Sequence[str],
    num_samples: int = 40,
    *,
    prompt: str = "auto",
    one_shot_example=None,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 42,
    batch_size: int = 4,
    normalizer: Normalizer | None = None,
    bos: str | None = "auto",
    word_rule: WordRule | None = None,
    return_texts: bool = False,
    progress: bool = False,
):
    """Sample ``num_samples`` first words per context, sharing each context's KV cache.

    Args:
        model: a causal LM (transformers or PEFT), in eval mode.
        tokenizer: its tokenizer (not modified).
        contexts: the cloze contexts (plain text, without a trailing space).
        num_samples: samples per context (paper: 40).
        prompt: ``"auto"``, ``"plain"``, ``"instruction"`` or ``"one_shot"`` (:mod:`varylm_hf.sampling.prompts`).
        one_shot_example: ``(context, answers)`` from the training split, for ``"one_shot"``.
        max_new_tokens: token budget to complete the first word; a sample still inside its first
            word when the budget runs out counts as :data:`NO_WORD`.
        temperature, top_k, top_p: sampling controls; the defaults give ancestral sampling.
        seed: base seed; each context's generator is seeded with :func:`context_seed`.
        batch_size: contexts encoded together (the cache holds ``batch_size * num_samples`` rows).
        normalizer: word normaliser (default: the one used for the human answers).
        bos: first token of plain contexts (:mod:`varylm_hf.conditioning`).
        word_rule: where the first word ends (default :data:`~varylm_hf.data.words.DEFAULT_WORD_RULE`).
        return_texts: also return the raw decoded continuations.
        progress: show a tqdm bar (contexts/s).

    Returns:
        ``words``: one list of ``num_samples`` normalised words per context (``NO_WORD`` for a
        failure), or ``(words, texts)`` with ``return_texts=True``.
    """
    _check_sampling_args(num_samples, max_new_tokens, temperature, top_k, top_p, batch_size)
    style, encoded, eos, pad_id = _encode_for_sampling(model, tokenizer, contexts, prompt, one_shot_example,
                                                       max_new_tokens, bos)
    spec = _Decoding(
        tokenizer=tokenizer, num_samples=num_samples, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, eos=eos, device=next(model.parameters()).device, pad_id=pad_id,
        rule=word_rule_for(normalizer, word_rule), lead=lead_of(style != "plain"),
    )
    device = spec.device

    words: list[list[str]] = []
    texts: list[list[str]] = []
    bar = None
    if progress:
        bar = tqdm(total=len(contexts), desc="sampling", unit="ctx")
    try:
        for start in range(0, len(contexts), batch_size):
            batch_ids = encoded[start : start + batch_size]
            batch_ctx = contexts[start : start + batch_size]
            gens = [
                torch.Generator(device=device).manual_seed(context_seed(seed, c)) for c in batch_ctx
            ]
            w, t = _sample_batch(model, batch_ids, gens, spec)
            words.extend(w)
            texts.extend(t)
            if bar is not None:
                bar.update(len(batch_ids))
    finally:
        if bar is not None:
            bar.close()
    return (words, texts) if return_texts else words


@dataclasses.dataclass(frozen=True)
class _Decoding:
    """Everything one sampling batch needs besides the model, its prompts and generators."""

    tokenizer: object
    num_samples: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    eos: set
    pad_id: int
    device: object
    rule: WordRule
    lead: str


def _sample_batch(model, batch_ids, gens, spec: _Decoding):
    tokenizer, S, max_new_tokens, eos, pad_id, device = (spec.tokenizer, spec.num_samples, spec.max_new_tokens,
                                                         spec.eos, spec.pad_id, spec.device)
    anchors = [ids[-1] for ids in batch_ids]

    B = len(batch_ids)
    L = max(len(x) for x in batch_ids)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for i, ids in enumerate(batch_ids):  # left padding
        input_ids[i, L - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[i, L - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=1)  # (B, 1, V)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        cache.batch_repeat_interleave(S)  # every sample row shares its context's prefix
        logits = out.logits[:, -1, :].repeat_interleave(S, dim=0)  # (B*S, V)
        mask = mask.repeat_interleave(S, dim=0)  # (B*S, L)
        next_pos = position_ids[:, -1].repeat_interleave(S, dim=0) + 1  # (B*S,)

        n_rows = B * S
        generated: list[list[int]] = [[] for _ in range(n_rows)]
        ended = [False] * n_rows  # reached an end-of-sequence token
        done = [False] * n_rows
        active = list(range(n_rows))  # row ids still decoding, in cache order
        for step in range(max_new_tokens):
            probs = _filter_logits(logits, spec.temperature, spec.top_k, spec.top_p)  # (len(active), V)
            tokens = torch.empty(len(active), dtype=torch.long, device=device)
            # draw each context's rows with that context's generator
            pos = 0
            while pos < len(active):
                ctx = active[pos] // S
                end = pos
                while end < len(active) and active[end] // S == ctx:
                    end += 1
                tokens[pos:end] = torch.multinomial(probs[pos:end], 1, generator=gens[ctx]).squeeze(-1)
                pos = end
            tok_list = tokens.tolist()
            to_decode = []
            for row, tok in zip(active, tok_list):
                if tok in eos:
                    ended[row] = done[row] = True
                else:
                    generated[row].append(tok)
                    to_decode.append(row)
            if to_decode:
                decoded = _decode_after(tokenizer, [anchors[r // S] for r in to_decode], [generated[r] for r in to_decode])
                for row, text in zip(to_decode, decoded):
                    if spec.rule.cut(text, ended=False, lead=spec.lead) is not None:
                        done[row] = True  # the first word (or the failure) is decided
            keep = [k for k, row in enumerate(active) if not done[row]]
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(active):
                keep_t = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(keep_t)
                tokens, mask, next_pos = tokens[keep_t], mask[keep_t], next_pos[keep_t]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                        cache=cache, use_cache=True)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1

    texts_flat = _decode_after(tokenizer, [anchors[r // S] for r in range(n_rows)], generated)
    words_flat = [word_from_continuation(t, e, rule=spec.rule, chat=spec.lead == "") for t, e in zip(texts_flat, ended)]
    words = [words_flat[i * S : (i + 1) * S] for i in range(B)]
    texts = [texts_flat[i * S : (i + 1) * S] for i in range(B)]
    return words, texts
