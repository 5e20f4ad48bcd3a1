"""The strategies that run plain sequences: ``pair`` (one sequence per (context, word), the brute-force
reference) and ``context`` (one forward per context, its words reusing the KV cache; for attention that refuses
4D masks)."""

from __future__ import annotations

import torch

from .gather import _inputs_of, _reads, _split, _sum_words
from .model import _cache_kwarg, _forward_params, _logits_at, _model_dtype_device, _unwrap


def _score_pair(model, context_ids, word_ids, eow, start_mask, batch_size, begin=None, begin_cls=None):
    """The ``pair`` strategy: one padded sequence per (context, word), ``batch_size`` sequences per forward."""
    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    pairs = [(i, j) for i, ws in enumerate(word_ids) for j in range(len(ws))]
    flat_index = {p: n for n, p in enumerate(pairs)}
    results = [None] * len(pairs)
    batch_size = batch_size or 16
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start: start + batch_size]
        seqs = [context_ids[i] + _inputs_of(word_ids[i][j], eow) for i, j in chunk]
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        att = torch.zeros(len(seqs), T, dtype=torch.long)
        keep = torch.zeros(len(seqs), T, dtype=torch.bool)
        for b, ((i, j), s) in enumerate(zip(chunk, seqs)):
            ids[b, : len(s)] = torch.tensor(s)
            att[b, : len(s)] = 1
            keep[b, len(context_ids[i]) - 1: len(s)] = True
        pos = torch.arange(T).expand(len(seqs), T)
        logits = _logits_at(model, ids.to(device), keep.to(device), params,
                            attention_mask=att.to(device), position_ids=pos.to(device))
        # row-major order of keep: per sequence, its query positions in order
        q_row, q_tok, q_word, eow_rows, eow_word = [], [], [], [], []
        r = 0
        for b, (i, j) in enumerate(chunk):
            w = word_ids[i][j]
            for m, t in enumerate(w):
                q_row.append(r + m)
                q_tok.append(t)
                q_word.append(b)
            if eow:
                eow_rows.append(r + len(w))
                eow_word.append(b)
            r += int(keep[b].sum())
        reads = _reads(len(chunk), q_row, q_tok, q_word, eow_rows, eow_word,
                       [begin_cls[i][j] for i, j in chunk] if begin is not None else None)
        vals = _sum_words([logits], reads, start_mask, begin)
        for b, p in enumerate(chunk):
            results[flat_index[p]] = vals[b]
    return _split(results, word_ids)


def _score_context(model, context_ids, word_ids, eow, start_mask, begin=None, begin_cls=None):
    """The ``context`` strategy: one forward per context, then its words as one batch reusing the KV cache."""
    from transformers import DynamicCache  # heavy: transformers; scoring imports only torch

    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    cache_kw = _cache_kwarg(params)
    config = _unwrap(model).config
    out = []
    for i, (ctx, words) in enumerate(zip(context_ids, word_ids)):
        if not words:
            out.append(torch.zeros(0, device=device))
            continue
        L = len(ctx)
        branches = [(j, _inputs_of(w, eow)) for j, w in enumerate(words)]
        branches = [(j, b) for j, b in branches if b]
        m = max((len(b) for _, b in branches), default=0)
        # logits rows: 0 after the context, then 1 + r*m + k after token k of branch r (padded to m tokens)
        at = {j: 1 + r * m for r, (j, _) in enumerate(branches)}
        q_row, q_tok, q_word, eow_rows, eow_word = [], [], [], [], []
        for j, w in enumerate(words):
            for k, t in enumerate(w):
                q_row.append(0 if k == 0 else at[j] + k - 1)
                q_tok.append(t)
                q_word.append(j)
            if eow:
                eow_rows.append(at[j] + len(w) - 1)
                eow_word.append(j)
        reads = _reads(len(words), q_row, q_tok, q_word, eow_rows, eow_word,
                       begin_cls[i] if begin is not None else None)

        def rows(ctx=ctx, L=L, branches=branches, m=m):
            cache = DynamicCache(config=config)
            ids = torch.tensor([ctx], device=device)
            yield model(input_ids=ids, position_ids=torch.arange(L, device=device)[None],
                        attention_mask=torch.ones_like(ids), use_cache=True, **{cache_kw: cache}).logits[0, -1:]
            if branches:
                nb = len(branches)
                bids = torch.zeros(nb, m, dtype=torch.long)
                for r, (_, b) in enumerate(branches):
                    bids[r, : len(b)] = torch.tensor(b)
                cache.batch_repeat_interleave(nb)
                yield model(input_ids=bids.to(device), attention_mask=torch.ones(nb, L + m, dtype=torch.long, device=device),
                            position_ids=(L + torch.arange(m, device=device)).expand(nb, m),
                            use_cache=True, **{cache_kw: cache}).logits.reshape(nb * m, -1)

        out.append(_sum_words(rows(), reads, start_mask, begin))
    return out
