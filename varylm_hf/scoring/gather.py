"""From next-token log-probabilities to word log-probabilities, shared by every strategy: which tokens the model
reads for a word, the per-word sum (with the end-of-word and word-begin terms), the split back per context."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

#: Logits rows normalised at a time without gradients (bounds the (rows, V) temporaries to ~12 MB at V=49k).
_REDUCE_ROWS = 64


def _inputs_of(word: list[int], eow: bool) -> list[int]:
    """Tokens the model must read for a word: all of them for eow, all but the last for paper."""
    return list(word) if eow else list(word[:-1])


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


@dataclass(frozen=True)
class _Reads:
    """Which logits row each word reads, as long tensors over one global row numbering.

    ``q_*``: one entry per (word, token): the row predicting the token; ``eow_*``: one per word of an
    end-of-word definition, the row after its last token and that token; ``begin_*`` (``pm``): one per word,
    the row before its first token and its :class:`WordBegin` class.
    """

    n_words: int
    q_row: torch.Tensor
    q_tok: torch.Tensor
    q_word: torch.Tensor
    eow_row: torch.Tensor
    eow_word: torch.Tensor
    eow_last: torch.Tensor
    begin_row: torch.Tensor | None
    begin_cls: torch.Tensor | None


def _reads(n_words, q_row, q_tok, q_word, eow_rows=(), eow_word=(), begin_cls=None) -> _Reads:
    """:class:`_Reads` from per-token lists (a word's queries in token order; its last query is its last token)."""
    last, first = {}, {}
    for r, w, t in zip(q_row, q_word, q_tok):
        last[w] = t
        first.setdefault(w, r)

    def long(x):
        return torch.as_tensor(list(x), dtype=torch.long)

    begin_row = long(first[k] for k in range(n_words)) if begin_cls is not None else None
    return _Reads(n_words, long(q_row), long(q_tok), long(q_word), long(eow_rows), long(eow_word),
                  long(last[w] for w in eow_word), begin_row, long(begin_cls) if begin_cls is not None else None)


def _sum_words(parts: Iterable[torch.Tensor], reads: _Reads, word_end=None, begin=None) -> torch.Tensor:
    """Per-word log q: the log-probs of its tokens (+ the end-of-word term) minus the word-begin term (``pm``).

    ``parts`` are consecutive blocks of logits rows (any iterable: a generator runs forwards lazily, so only one
    block is held at a time). Without gradients each block is normalised ``_REDUCE_ROWS`` rows at a time; with
    gradients in one piece (one graph node per block).
    """
    out = None
    offset = 0
    for part in parts:
        if out is None:
            out = torch.zeros(reads.n_words, dtype=torch.float32, device=part.device)
        step = part.shape[0] if torch.is_grad_enabled() else _REDUCE_ROWS
        for block in part.split(max(step, 1), dim=0):
            lo, hi = offset, offset + block.shape[0]
            offset = hi
            logp = _log_softmax(block)
            if reads.begin_row is not None:
                sel = ((reads.begin_row >= lo) & (reads.begin_row < hi)).nonzero()[:, 0]
                if len(sel):
                    term = begin.term(logp, reads.begin_cls[sel].to(out.device), rows=reads.begin_row[sel] - lo)
                    out = out.index_add(0, sel.to(out.device), -term)
            sel = (reads.q_row >= lo) & (reads.q_row < hi)
            if bool(sel.any()):
                vals = logp[(reads.q_row[sel] - lo).to(out.device), reads.q_tok[sel].to(out.device)]
                out = out.index_add(0, reads.q_word[sel].to(out.device), vals)
            sel = (reads.eow_row >= lo) & (reads.eow_row < hi)
            if bool(sel.any()):
                term = word_end.term(logp, reads.eow_last[sel], rows=reads.eow_row[sel] - lo)
                out = out.index_add(0, reads.eow_word[sel].to(out.device), term)
    if out is None:
        out = torch.zeros(reads.n_words, dtype=torch.float32)
    return out


def _split(values: list, word_ids) -> list[torch.Tensor]:
    out, k = [], 0
    device = values[0].device if values else None
    for words in word_ids:
        n = len(words)
        out.append(torch.stack(values[k: k + n]) if n else torch.zeros(0, device=device))
        k += n
    return out
