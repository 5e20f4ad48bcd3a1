"""From next-token log-probabilities to word log-probabilities, shared by every strategy: which tokens the model
reads for a word, the per-word sum (with the end-of-word and word-begin terms), the split back per context."""

from __future__ import annotations

import torch


def _inputs_of(word: list[int], eow: bool) -> list[int]:
    """Tokens the model must read for a word: all of them for eow, all but the last for paper."""
    return list(word) if eow else list(word[:-1])


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


def _gather(logp_rows, q_row, q_tok, q_word, n_words, eow_rows, eow_word, word_end, like, begin=None, begin_cls=None):
    """Sum per word: log-probs of its tokens (+ the end-of-word term; ``q_tok`` of a word's last query is its last token),
    minus the word-begin term at the word's first query row when ``begin`` is given (``pm``)."""
    out = torch.zeros(n_words, dtype=torch.float32, device=like.device)
    if begin is not None and n_words:
        first: dict = {}
        for r, w in zip(q_row, q_word):
            first.setdefault(w, r)
        out = out - begin.term(logp_rows, begin_cls, rows=[first[k] for k in range(n_words)])
    if q_row:
        rows = torch.tensor(q_row, device=like.device)
        toks = torch.tensor(q_tok, device=like.device)
        out = out.index_add(0, torch.tensor(q_word, device=like.device), logp_rows[rows, toks])
    if eow_rows:
        last = {}
        for w, t in zip(q_word, q_tok):
            last[w] = t
        term = word_end.term(logp_rows, [last[w] for w in eow_word], rows=eow_rows)
        out = out.index_add(0, torch.tensor(eow_word, device=like.device), term)
    return out


def _split(values: list, word_ids) -> list[torch.Tensor]:
    out, k = [], 0
    device = values[0].device if values else None
    for words in word_ids:
        n = len(words)
        out.append(torch.stack(values[k: k + n]) if n else torch.zeros(0, device=device))
        k += n
    return out
