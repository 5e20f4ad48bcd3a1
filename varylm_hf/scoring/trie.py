"""The strategies over a token trie: ``tree`` (one trie per context, packed into rows, one forward with a 4D
mask) and ``passage`` (one merged trie whose context trunk runs once with a KV cache, then the word branches in
chunks)."""

from __future__ import annotations

import numpy as np
import torch

from .gather import _inputs_of, _reads, _split, _sum_words
from .model import _cache_kwarg, _forward_params, _forward_rows, _logits_at, _model_dtype_device, _unwrap

#: Packing budget of one ``tree`` row, in tokens (``max_row_tokens`` of :func:`~varylm_hf.scoring.score_token_ids`).
_DEFAULT_ROW_TOKENS = 2048


def _build_forest(context_ids, word_ids, eow, merge_contexts):
    """Token trie: returns nodes (token, parent, depth, tree), per-word query lists and the number of context
    (trunk) nodes, which come first."""
    tok, parent, depth, tree = [], [], [], []
    child: dict = {}

    def insert(par, key_root, toks, tree_id):
        path = []
        for t in toks:
            key = (par if par >= 0 else key_root, t)
            node = child.get(key)
            if node is None:
                node = len(tok)
                child[key] = node
                tok.append(t)
                parent.append(par)
                depth.append(depth[par] + 1 if par >= 0 else 0)
                tree.append(tree_id if par < 0 else tree[par])
            path.append(node)
            par = node
        return path

    ctx_node = []
    for i, ctx in enumerate(context_ids):
        root_key = ("root",) if merge_contexts else ("root", i)
        first_key = (root_key, ctx[0])
        tree_id = child[first_key] if first_key in child else len(tok)
        ctx_node.append(insert(-1, root_key, ctx, tree_id)[-1])
    n_trunk = len(tok)  # nodes of the contexts come first
    queries = []  # per word: (list of (node, target)), eow node or None
    for i, words in enumerate(word_ids):
        for w in words:
            path = insert(ctx_node[i], None, _inputs_of(w, eow), None)
            nodes = [ctx_node[i]] + path
            queries.append(([(nodes[m], t) for m, t in enumerate(w)], nodes[len(w)] if eow else None))
    return tok, parent, depth, tree, queries, n_trunk


def _score_tree(model, context_ids, word_ids, eow, start_mask, merge_contexts, max_row_tokens, begin=None,
                begin_cls=None):
    """The ``tree`` strategy (``merge_contexts``: ``passage``'s merged trie): tries packed into rows of at most
    ``max_row_tokens``, ONE forward with a float additive 4D mask and explicit position ids."""
    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    tok, parent, depth, tree, queries, _ = _build_forest(context_ids, word_ids, eow, merge_contexts)
    # group nodes by tree (insertion order keeps parents first), pack trees into rows
    by_tree: dict = {}
    for n, t in enumerate(tree):
        by_tree.setdefault(t, []).append(n)
    groups = sorted(by_tree.values(), key=len, reverse=True)
    cap = max(max_row_tokens or _DEFAULT_ROW_TOKENS, len(groups[0]))
    rows, fill = [], []
    for g in groups:
        for r in range(len(rows)):
            if fill[r] + len(g) <= cap:
                rows[r].extend(g)
                fill[r] += len(g)
                break
        else:
            rows.append(list(g))
            fill.append(len(g))
    B, T = len(rows), max(fill)
    where = {}
    ids = np.zeros((B, T), dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64)
    allowed = np.zeros((B, T, T), dtype=bool)
    for b, row in enumerate(rows):
        for c, n in enumerate(row):
            where[n] = (b, c)
            ids[b, c] = tok[n]
            pos[b, c] = depth[n]
            p = parent[n]
            if p >= 0:
                allowed[b, c] = allowed[b, where[p][1]]
            allowed[b, c, c] = True
        for c in range(len(row), T):  # padding attends to itself only
            allowed[b, c, c] = True
    needed = {n for q, e in queries for n, _ in q} | {e for _, e in queries if e is not None}
    keep = np.zeros((B, T), dtype=bool)
    for n in needed:
        keep[where[n]] = True
    flat = np.cumsum(keep.reshape(-1)) - 1  # row-major index of each kept position
    qrow = {n: int(flat[where[n][0] * T + where[n][1]]) for n in needed}
    mask = torch.zeros((B, 1, T, T), dtype=dtype)
    mask.masked_fill_(~torch.from_numpy(allowed)[:, None], torch.finfo(dtype).min)
    logits = _logits_at(model, torch.from_numpy(ids).to(device), torch.from_numpy(keep).to(device), params,
                        attention_mask=mask.to(device), position_ids=torch.from_numpy(pos).to(device))
    return _words_from_logits([logits], qrow, queries, word_ids, start_mask, begin, begin_cls)


def _words_from_logits(parts, qrow, queries, word_ids, start_mask, begin, begin_cls):
    """Per-context word log-probs from the logits of the needed trie nodes (``qrow``: node -> logits row;
    ``parts``: the rows in consecutive blocks, maybe a generator of forwards)."""
    q_row, q_tok, q_word, eow_rows, eow_word = [], [], [], [], []
    for k, (q, e) in enumerate(queries):
        for n, t in q:
            q_row.append(qrow[n])
            q_tok.append(t)
            q_word.append(k)
        if e is not None:
            eow_rows.append(qrow[e])
            eow_word.append(k)
    reads = _reads(len(queries), q_row, q_tok, q_word, eow_rows, eow_word,
                   [c for per in begin_cls for c in per] if begin is not None else None)
    vals = _sum_words(parts, reads, start_mask, begin)
    return _split(list(vals.unbind(0)) if len(queries) else [], word_ids)


def _ancestor_mask(parent, nodes, local) -> np.ndarray:
    """``allowed[i, j]``: node ``nodes[j]`` is ``nodes[i]`` or one of its ancestors (``local``: node -> index)."""
    allowed = np.zeros((len(nodes), len(nodes)), dtype=bool)
    for i, n in enumerate(nodes):
        p = parent[n]
        if p >= 0 and p in local:
            allowed[i] = allowed[local[p]]
        allowed[i, i] = True
    return allowed


def _float_mask(allowed: np.ndarray, dtype) -> torch.Tensor:
    mask = torch.zeros((1, 1) + allowed.shape, dtype=dtype)
    return mask.masked_fill_(~torch.from_numpy(allowed)[None, None], torch.finfo(dtype).min)


def _score_trunk(model, context_ids, word_ids, eow, start_mask, chunk_tokens, begin=None, begin_cls=None):
    """The ``passage`` strategy: one merged trie, its context trunk run once with a KV cache, then the word
    branches in chunks of about ``chunk_tokens`` that attend to the cached trunk.

    Attention then costs (branch tokens x (trunk + chunk)) instead of (all nodes)^2, and no trunk token is
    computed twice; each chunk's cache holds only the trunk nodes its branches attend to (the other passages'
    and later contexts' nodes are dropped), and each chunk's logits are reduced to word log-probs before the
    next forward, so one chunk's (rows, V) logits are held at a time. Equal to one forward over the whole trie
    (``_score_tree``) up to float rounding.
    """
    from transformers import DynamicCache  # heavy: transformers; scoring imports only torch

    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    cache_kw = _cache_kwarg(params)
    tok, parent, depth, tree, queries, n_trunk = _build_forest(context_ids, word_ids, eow, True)
    needed = {n for q, e in queries for n, _ in q} | {e for _, e in queries if e is not None}
    trunk = list(range(n_trunk))
    trunk_allowed = _ancestor_mask(parent, trunk, {n: n for n in trunk})
    keep = [n for n in trunk if n in needed]
    cache = DynamicCache(config=_unwrap(model).config)
    trunk_logits = _forward_rows(model, [tok[n] for n in trunk], [depth[n] for n in trunk],
                                 _float_mask(trunk_allowed, dtype), keep, params, device, use_cache=True,
                                 **{cache_kw: cache})
    trunk_kv = [(layer.keys, layer.values) for layer in cache.layers]
    if not trunk_kv or any(k is None or k.shape[-2] != n_trunk for k, _ in trunk_kv):
        # the model did not fill the cache (checkpointing...), or a sliding-window layer kept only its window
        return _score_tree(model, context_ids, word_ids, eow, start_mask, True, None, begin, begin_cls)
    # branch subtrees (a word's nodes below the trunk stay together), packed into chunks in insertion order
    root = {}
    groups: dict = {}
    for n in range(n_trunk, len(tok)):
        p = parent[n]
        root[n] = n if p < n_trunk else root[p]
        groups.setdefault(root[n], []).append(n)
    chunks, cur = [], []
    for g in groups.values():
        if cur and len(cur) + len(g) > chunk_tokens:
            chunks.append(cur)
            cur = []
        cur = cur + g
    if cur:
        chunks.append(cur)
    order = list(keep) + [n for nodes in chunks for n in nodes if n in needed]

    held = [trunk_logits]  # handed over, not kept: only the chunk being reduced stays alive
    del trunk_logits

    def branch_logits():
        yield held.pop()
        for nodes in chunks:
            local = {n: i for i, n in enumerate(nodes)}
            ancestors = trunk_allowed[[parent[root[n]] for n in nodes]]
            cols = np.flatnonzero(ancestors.any(axis=0))  # only the trunk nodes this chunk's branches attend to
            allowed = np.concatenate([ancestors[:, cols], _ancestor_mask(parent, nodes, local)], axis=1)
            cols_t = torch.from_numpy(cols)
            branch_cache = DynamicCache(config=_unwrap(model).config)
            for i, (k, v) in enumerate(trunk_kv):  # each layer's cache on its own device (a model split over GPUs)
                at = cols_t.to(k.device)
                branch_cache.update(k.index_select(2, at), v.index_select(2, at), i)
            yield _forward_rows(model, [tok[n] for n in nodes], [depth[n] for n in nodes],
                                _float_mask(allowed, dtype), [local[n] for n in nodes if n in needed], params,
                                device, use_cache=True, **{cache_kw: branch_cache})

    qrow = {n: i for i, n in enumerate(order)}
    return _words_from_logits(branch_logits(), qrow, queries, word_ids, start_mask, begin, begin_cls)
