"""The low-level engine :func:`score_token_ids`: checks pre-tokenised contexts and words, builds the boundary
terms a definition needs and hands them to a strategy (:mod:`.sequences`, :mod:`.trie`).

Tests patch ``_score_context``, ``_score_trunk``, ``supports_tree_attention`` and ``_BRANCH_CHUNK_TOKENS`` here,
where :func:`score_token_ids` looks them up (patching the package attributes has no effect)."""

from __future__ import annotations

import torch

from ..errors import InputError
from ..options import STRATEGIES, WORD_DEFINITIONS
from .boundaries import _as_word_end
from .model import _model_dtype_device, supports_tree_attention
from .sequences import _score_context, _score_pair
from .trie import _score_tree, _score_trunk

#: Word-branch tokens per forward of the ``passage`` strategy (each attends to the cached trunk + its chunk).
_BRANCH_CHUNK_TOKENS = 256


def _check_args(definition, strategy, word_start_mask_):
    if definition not in WORD_DEFINITIONS:
        raise InputError(f"`definition`={definition!r}: expected one of {', '.join(WORD_DEFINITIONS)}")
    if strategy not in STRATEGIES:
        raise InputError(f"`strategy`={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if definition in ("eow", "pm") and word_start_mask_ is None:
        raise InputError(f"`definition`={definition!r} needs `word_start_mask` (see scoring.word_end_masks)")


def score_token_ids(model, context_ids: list[list[int]], word_ids: list[list[list[int]]], *,
                    definition: str = "paper", word_start_mask=None, strategy: str = "tree",
                    batch_size: int | None = None, max_row_tokens: int | None = None, word_begin=None,
                    text_start=None) -> list[torch.Tensor]:
    """Log q(w|c) for pre-tokenised contexts and words (the low-level engine).

    Args:
        model: a causal LM (plain, peft-wrapped or DDP-wrapped); its train/eval mode is left alone.
        context_ids: one token-id list per context (BOS/prompt included by the caller).
        word_ids: per context, a list of words, each a non-empty token-id list (a "word" may
            be any completion, e.g. chat-formatted answer tokens ending with end-of-turn).
        definition: ``"paper"``, ``"eow"`` or ``"pm"`` (:mod:`varylm_hf.scoring`).
        word_start_mask: the end-of-word tokens, required for ``"eow"`` and ``"pm"``: a :class:`WordEnd` from
            :func:`word_end_masks` (the sampler's word rule) or :func:`pm_boundary`, or one boolean ``(V,)`` mask.
        strategy: one of :data:`STRATEGIES`; ``tree``/``passage`` fall back to ``context`` when
            the model's attention refuses 4D masks, or when a sequence is longer than its sliding window
            (:func:`supports_tree_attention`).
        batch_size: pairs per forward for ``pair`` (default 16); unused otherwise.
        max_row_tokens: packing budget of one tree row (default 2048 tokens; ``tree`` only: ``passage`` runs
            its merged trie's trunk once with a KV cache and the word branches in chunks of 256 tokens).
        word_begin: ``"pm"`` only: the :class:`WordBegin` whose mass after the context is divided out.
        text_start: ``"pm"`` only: per context, True when it is empty (its word is the first of a text).

    Returns:
        One 1-D float32 tensor per context, natural-log q(w|c) in the order of ``word_ids[i]``;
        differentiable when grad is enabled.
    """
    _check_args(definition, strategy, word_start_mask)
    if len(context_ids) != len(word_ids):
        raise InputError(f"{len(context_ids)} contexts but {len(word_ids)} word lists")
    for i, (ctx, words) in enumerate(zip(context_ids, word_ids)):
        if not ctx:
            raise InputError(f"context {i}: no tokens (add a BOS token or a prompt)")
        for w in words:
            if not w:
                raise InputError(f"context {i}: a word has no tokens")
    eow = definition in ("eow", "pm")
    if eow:
        word_start_mask = _as_word_end(word_start_mask)
    begin = begin_cls = None
    if definition == "pm":
        if word_begin is None:
            raise InputError("`definition`='pm' needs `word_begin` (see scoring.pm_boundary)")
        begin = word_begin
        starts = list(text_start) if text_start is not None else [False] * len(word_ids)
        begin_cls = [begin.classes([w[0] for w in words], [s] * len(words)) for words, s in zip(word_ids, starts)]
    if not any(word_ids):
        _, device = _model_dtype_device(model)
        return [torch.zeros(0, device=device) for _ in word_ids]
    longest = max(len(c) + max((len(w) for w in ws), default=0) for c, ws in zip(context_ids, word_ids))
    if strategy in ("tree", "passage") and not supports_tree_attention(model, longest):
        strategy = "context"  # the model's own masks
    if strategy == "pair":
        return _score_pair(model, context_ids, word_ids, eow, word_start_mask, batch_size, begin, begin_cls)
    if strategy == "context":
        return _score_context(model, context_ids, word_ids, eow, word_start_mask, begin, begin_cls)
    if strategy == "passage":
        if torch.is_grad_enabled():  # training: one forward over the merged trie (checkpointed layers drop the
            return _score_tree(model, context_ids, word_ids, eow, word_start_mask, True, max_row_tokens,  # KV cache,
                               begin, begin_cls)  # and backward through chunked cached forwards is ~1.6x slower on CPU
        return _score_trunk(model, context_ids, word_ids, eow, word_start_mask, _BRANCH_CHUNK_TOKENS, begin, begin_cls)
    return _score_tree(model, context_ids, word_ids, eow, word_start_mask, False, max_row_tokens, begin, begin_cls)
