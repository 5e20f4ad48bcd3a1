"""What every sampling backend makes of a continuation: its text after the prompt, cut to its first word.

Each continuation is cut to its first word by the ONE word rule that the exact scorer's end-of-word
masks derive from (:class:`varylm_hf.data.words.WordRule`: one space then letters/digits after a
plain context, the response's start after a chat prompt; inner hyphens kept, contractions split as
in the Provo answers), normalised like the human answers. A sample that opens no word (punctuation
first, no space, end of sequence first, or no decision within ``max_new_tokens``) is kept as the
outcome :data:`~varylm_hf.data.normalize.NO_WORD`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..data.normalize import NO_WORD, Normalizer
from ..data.words import DEFAULT_WORD_RULE, WordRule


def word_rule_for(normalizer: Normalizer | None = None, rule: WordRule | None = None) -> WordRule:
    """The word rule to cut samples with: ``rule`` (default rule) with ``normalizer`` swapped in if given."""
    rule = rule or DEFAULT_WORD_RULE
    return rule if normalizer is None else dataclasses.replace(rule, normalizer=normalizer)


def lead_of(chat: bool) -> str:
    """What precedes a word: one space after a plain context, nothing at the start of a chat response."""
    return "" if chat else " "


def word_from_continuation(text: str, ended: bool, normalizer: Normalizer | None = None, *, chat: bool = False,
                           rule: WordRule | None = None) -> str:
    """The outcome of a finished continuation: its normalised first word, or :data:`NO_WORD`.

    Cut by :meth:`varylm_hf.data.words.WordRule.first_word` (``ended``: the sequence ended right
    after ``text``); a continuation still undecided when the token budget ran out is a failure.
    """
    word = word_rule_for(normalizer, rule).first_word(text, ended=ended, lead=lead_of(chat))
    return NO_WORD if word is None else word


def _decode_after(tokenizer, anchors: Sequence[int], rows: Sequence[list[int]]) -> list[str]:
    """Decode each row as it reads after its anchor token (keeps SentencePiece's leading space)."""
    full = tokenizer.batch_decode([[a] + r for a, r in zip(anchors, rows)], skip_special_tokens=True)
    heads = tokenizer.batch_decode([[a] for a in anchors], skip_special_tokens=True)
    return [f[len(h):] if f.startswith(h) else f for f, h in zip(full, heads)]
