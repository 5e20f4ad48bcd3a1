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
    """Which logits row each word reads, as long tensors over one global row numbering, each group sorted by row.

    ``q_*``: one entry per (word, token): the row predicting the token; ``eow_*``: one per word of an
    end-of-word definition, the row after its last token and that token; ``begin_*`` (``pm``): one per word,
    the row before its first token, the word and its :class:`WordBegin` class.
    """

    n_words: int
    q_row: torch.Tensor
    q_tok: torch.Tensor
    q_word: torch.Tensor
    eow_row: torch.Tensor
    eow_word: torch.Tensor
    eow_last: torch.Tensor
    begin_row: torch.Tensor | None
    begin_word: torch.Tensor | None
    begin_cls: torch.Tensor | None


def _by_row(rows, *others):
    """Long tensors of ``rows`` and ``others``, stably sorted by row (a block's entries are then one slice)."""
    rows = torch.as_tensor(list(rows), dtype=torch.long)
    order = torch.argsort(rows, stable=True)
    return [rows[order]] + [torch.as_tensor(list(o), dtype=torch.long)[order] for o in others]


def _reads(n_words, q_row, q_tok, q_word, eow_rows=(), eow_word=(), begin_cls=None) -> _Reads:
    """:class:`_Reads` from per-token lists (a word's queries in token order; its last query is its last token)."""
    last, first = {}, {}
    for r, w, t in zip(q_row, q_word, q_tok):
        last[w] = t
        first.setdefault(w, r)
    q = _by_row(q_row, q_tok, q_word)
    e = _by_row(eow_rows, eow_word, [last[w] for w in eow_word])
    b = _by_row([first[k] for k in range(n_words)], range(n_words), begin_cls) if begin_cls is not None else [None] * 3
    return _Reads(n_words, *q, *e, *b)


def _block(rows: torch.Tensor, lo: int, hi: int) -> slice:
    """The slice of the sorted ``rows`` that fall in ``[lo, hi)``."""
    a, b = torch.searchsorted(rows, torch.tensor([lo, hi])).tolist()
    return slice(a, b)


def _sum_words(parts: Iterable[torch.Tensor], reads: _Reads, word_end=None, begin=None) -> torch.Tensor:
    """Per-word log q: the log-probs of its tokens (+ the end-of-word term) minus the word-begin term (``pm``).

    ``parts`` are consecutive blocks of logits rows (any iterable: a generator runs forwards lazily, so only the
    block being reduced is held). On CPU without gradients each block is normalised ``_REDUCE_ROWS`` rows at a
    time; with gradients, or on an accelerator, in one piece.
    """
    out = None
    offset = 0
    for part in parts:
        if not part.shape[0]:
            continue
        device = part.device
        if out is None:
            out = torch.zeros(reads.n_words, dtype=torch.float32, device=device)
        whole = torch.is_grad_enabled() or device.type != "cpu"
        for block in part.split(part.shape[0] if whole else _REDUCE_ROWS, dim=0):
            lo, hi = offset, offset + block.shape[0]
            offset = hi
            logp = _log_softmax(block)
            if reads.begin_row is not None:
                s = _block(reads.begin_row, lo, hi)
                if s.stop > s.start:
                    term = begin.term(logp, reads.begin_cls[s].to(device), rows=(reads.begin_row[s] - lo).to(device))
                    out = out.index_add(0, reads.begin_word[s].to(device), -term)
            s = _block(reads.q_row, lo, hi)
            if s.stop > s.start:
                vals = logp[(reads.q_row[s] - lo).to(device), reads.q_tok[s].to(device)]
                out = out.index_add(0, reads.q_word[s].to(device), vals)
            s = _block(reads.eow_row, lo, hi)
            if s.stop > s.start:
                term = word_end.term(logp, reads.eow_last[s], rows=(reads.eow_row[s] - lo).to(device))
                out = out.index_add(0, reads.eow_word[s].to(device), term)
            del logp
        del part, block
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
