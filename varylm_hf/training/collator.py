"""Turn cloze records into word-scoring batches for :class:`varylm_hf.training.var.VarTrainer`.

A record is one context with its human answers (see ``varylm_hf.data``). The collator picks
the target distribution p(w|c) of the record under a label view (``corpus``, ``majority``,
``all``, ``sample_k``), tokenises the context and every target word as it appears after the
context, and returns::

    {"context_ids": [[int, ...], ...],          # one list per context (BOS included)
     "word_ids": [[[int, ...], ...], ...],      # per context, per target word
     "target_probs": FloatTensor (B, W_max),    # p(w|c), zero-padded
     "num_words": LongTensor (B,),
     "record_ids": [str, ...]}

Tokenisations are cached per record (the label view of a record never changes in a run).
"""

from __future__ import annotations

import torch

from ..data import LABEL_MODES, label_distribution
from ..errors import InputError
from ..scoring import encode_batch

__all__ = ["VarCollator"]


class VarCollator:
    """Collate records into word-scoring batches.

    Args:
        tokenizer: the model's tokenizer.
        label_mode: ``corpus`` | ``majority`` | ``all`` | ``sample_k``.
        label_k: answers drawn per context for ``sample_k``.
        seed: seed of the ``sample_k`` draw (same draw for the same record in every epoch).
        max_context_tokens: keep at most this many context tokens (cut from the left).
        max_positions: the model's position limit (contexts are cut so context + word fits).
        eow: the loss uses the end-of-word definition (the word's last token is read too).
        bos: first token of every context (:mod:`varylm_hf.conditioning`; default ``"auto"``).
    """

    def __init__(self, tokenizer, label_mode: str = "all", label_k: int | None = None, seed: int = 42,
                 max_context_tokens: int | None = None, max_positions: int | None = None, eow: bool = False,
                 bos: str | None = "auto"):
        self.tokenizer = tokenizer
        self.label_mode = label_mode
        self.label_k = label_k
        self.seed = seed
        self.max_context_tokens = max_context_tokens
        self.max_positions = max_positions
        self.eow = eow
        self.bos = bos
        self._cache: dict = {}

    def encode(self, record: dict) -> tuple[list[int], list[list[int]], list[float], str]:
        """``(context_ids, word_ids, probs, record_id)`` of one record (cached)."""
        rid = str(record.get("id", record.get("context")))
        hit = self._cache.get(rid)
        if hit is not None:
            return hit
        if "context" not in record:
            raise InputError(f"record {rid}: missing field 'context' (expected a cloze record, see varylm_hf.data)")
        view = LABEL_MODES.get(self.label_mode)
        if view is None:
            raise InputError(f"`label_mode`={self.label_mode!r}: expected one of {', '.join(LABEL_MODES)}")
        if view.needs_answers and not record.get("answers"):
            raise InputError(f"record {rid}: no answers; drop it or use label_mode='corpus'")
        dist = label_distribution(record, self.label_mode, k=self.label_k, seed=self.seed)
        words = [w for w, _ in dist]
        try:
            (ctx,), (wids,) = encode_batch(self.tokenizer, [record["context"]], [words],
                                           max_context_tokens=self.max_context_tokens,
                                           max_positions=self.max_positions, eow=self.eow, bos=self.bos)
        except InputError as err:
            raise InputError(f"record {rid}: {err}") from None
        out = (ctx, wids, [p for _, p in dist], rid)
        self._cache[rid] = out
        return out

    def __call__(self, records: list[dict]) -> dict:
        """Collate a list of records (see the module docstring for the batch layout)."""
        encoded = [self.encode(r) for r in records]
        width = max(len(e[1]) for e in encoded)
        probs = torch.zeros(len(encoded), width, dtype=torch.float32)
        for i, e in enumerate(encoded):
            probs[i, : len(e[2])] = torch.tensor(e[2])
        return {
            "context_ids": [e[0] for e in encoded],
            "word_ids": [e[1] for e in encoded],
            "target_probs": probs,
            "num_words": torch.tensor([len(e[1]) for e in encoded]),
            "record_ids": [e[3] for e in encoded],
        }
