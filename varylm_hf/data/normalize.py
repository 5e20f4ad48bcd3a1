"""One word normaliser for human answers and model samples alike.

Pure Python (no torch): the same :class:`Normalizer` turns a human cloze answer and a
word sampled from a model into the same comparable string, so that TVD compares like
with like. Each step can be switched off; the defaults are documented in the dataset card.

Steps, in order:

1. mojibake repair: the official Provo CSV is cp1252 with MacRoman bytes, so a right
   quote reads ``Õ`` and an em dash ``Ñ``; these are mapped back (``repair_mojibake``);
2. Unicode NFKC, then typographic quotes and dashes mapped to ASCII (``ascii_quotes``);
3. whitespace collapsed and stripped;
4. lower-casing (``lowercase``);
5. punctuation stripped from both edges of the word, inner apostrophes and hyphens kept
   (``strip_punctuation``): ``"Mat."`` -> ``mat``, ``doesn't`` stays ``doesn't``;
6. an answer left with no letter or digit (``"-----"``, ``"?"``) becomes ``""``, which
   loaders drop and samplers count as a failure (:data:`NO_WORD`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

__all__ = ["NO_WORD", "Normalizer", "normalize_word", "first_word", "DEFAULT_NORMALIZER"]

#: Outcome recorded for a model sample that produced no word (kept in the distribution).
NO_WORD = "<no-word>"

# cp1252 renderings of MacRoman punctuation bytes seen in the Provo norms.
_MOJIBAKE = {
    "\u00d5": "\u2019",  # Õ -> ’ (right single quote)
    "\u00d4": "\u2018",  # Ô -> ‘
    "\u00d2": "\u201c",  # Ò -> “
    "\u00d3": "\u201d",  # Ó -> ”
    "\u00d1": "\u2014",  # Ñ -> — (em dash)
    "\u00d0": "\u2013",  # Ð -> – (en dash)
}
_ASCII = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
}
_WS = re.compile(r"\s+")


def _is_edge_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in ("P", "S")


@dataclass(frozen=True)
class Normalizer:
    """Configurable word normaliser (see the module docstring for the steps).

    Args:
        lowercase: lower-case the word. Default ``True``.
        strip_punctuation: strip punctuation and symbols from both edges. Default ``True``.
        repair_mojibake: map cp1252-read MacRoman quotes/dashes back. Default ``True``.
        ascii_quotes: map typographic quotes and dashes to ASCII. Default ``True``.

    Example:
        >>> Normalizer()("  Mat. ")
        'mat'
        >>> Normalizer()("doesnÕt")
        "doesn't"
        >>> Normalizer()("-----")
        ''
    """

    lowercase: bool = True
    strip_punctuation: bool = True
    repair_mojibake: bool = True
    ascii_quotes: bool = True

    def __call__(self, word: str) -> str:
        """Normalise one answer; returns ``""`` when nothing word-like is left."""
        if not isinstance(word, str):
            raise TypeError(f"expected a string to normalise, got {type(word).__name__}: {word!r}")
        text = word
        if self.repair_mojibake:
            text = "".join(_MOJIBAKE.get(ch, ch) for ch in text)
        text = unicodedata.normalize("NFKC", text)
        if self.ascii_quotes:
            text = "".join(_ASCII.get(ch, ch) for ch in text)
        text = _WS.sub(" ", text).strip()
        if self.lowercase:
            text = text.lower()
        if self.strip_punctuation:
            start, end = 0, len(text)
            while start < end and _is_edge_punct(text[start]):
                start += 1
            while end > start and _is_edge_punct(text[end - 1]):
                end -= 1
            text = text[start:end].strip()
        if not any(ch.isalnum() for ch in text):
            return ""
        return text

    def to_dict(self) -> dict:
        """The settings as a plain dict (recorded in dataset cards and run configs)."""
        return asdict(self)


DEFAULT_NORMALIZER = Normalizer()


def normalize_word(word: str, normalizer: Normalizer | None = None) -> str:
    """Normalise ``word`` with ``normalizer`` (default settings when ``None``)."""
    return (normalizer or DEFAULT_NORMALIZER)(word)


def first_word(text: str, normalizer: Normalizer | None = None) -> str:
    """Cut a model continuation to its first whitespace-delimited word and normalise it.

    Args:
        text: the decoded continuation (it usually starts with a space).
        normalizer: the normaliser; default settings when ``None``.

    Whether the word is complete (followed by whitespace or the end of generation) is the
    sampler's business: it passes only continuations that reached a word boundary.

    Returns:
        The normalised first word, or :data:`NO_WORD` when the continuation holds no word
        (empty, whitespace, or punctuation only).

    Example:
        >>> first_word(" mat, and then")
        'mat'
        >>> first_word("   ")
        '<no-word>'
    """
    parts = text.split()
    if not parts:
        return NO_WORD
    word = normalize_word(parts[0], normalizer)
    return word if word else NO_WORD
