"""What "the next word" is: ONE definition for human answers, model samples and exact scores.

Pure Python (no torch). Everything that decides where a word ends derives from
:meth:`WordRule.cut`:

* the sampler cuts each continuation with it (:meth:`WordRule.first_word`);
* the exact scorer's end-of-word masks are computed by running :meth:`WordRule.cut` on every
  vocabulary token placed after a probe word (:meth:`WordRule.ends_word`, used by
  :func:`varylm_hf.scoring.word_end_masks`);
* the surface forms whose exact probabilities add up to a normalised human word are the
  candidate spellings that the same rule cuts and normalises back to that word
  (:meth:`WordRule.surface_forms`).

The default rule matches how the Provo norms were recorded (``shared/data/provo``: no apostrophe
in any of the 39,784 distinct answers, but ``ca`` 19 times, i.e. Treebank-style contraction
splitting ``can't -> ca + n't`` with the first part kept; inner hyphens kept, e.g.
``self-esteem``):

1. A continuation opens a new word only with the *lead* the word scorer uses: exactly one space
   after a plain context (``"The cat sat on the" + " mat"``), nothing after a chat prompt (the
   response starts the word). Anything else is a failure (:data:`NO_WORD`): a continuation of
   the context's last word (``"the" + "re"``), a newline, two spaces, or punctuation first
   (``", and"``; this rule reproduces the paper's GPT-2 row, 0.607).
2. The word is a run of letters and digits. An inner hyphen between two letters/digits is kept
   (``well-known``); every other character ends the word (space, ``.``, ``,``, ``—``, ``/``...).
3. An apostrophe (``'`` or ``’``) ends the word (``it's -> it``), and a trailing ``n`` before
   ``'t`` goes with it (Treebank: ``can't -> ca``, ``don't -> do``) — with
   ``contractions="keep"`` inner apostrophes are kept instead (``it's``).
4. The word is complete when a character that ends it follows, or the sequence ended (EOS or any
   special token). Its normalised form (:class:`~varylm_hf.data.normalize.Normalizer`:
   lower-cased, ASCII quotes) is the outcome.

Mismatches that remain (documented in the cards): the exact scorer scores the canonical
tokenisation of each spelling only, and sums the lower-case and Capitalised spellings (plus the
``n't`` spelling of a contraction host), not ALL-CAPS; a token that is a lone ``-`` (or ``'``
under ``keep``) could still join a compound depending on the token after it, so the exact
scorer counts it as continuing the word (a lower bound).

>>> rule = WordRule()
>>> rule.first_word(" mat, and then", ended=False)
'mat'
>>> rule.first_word(" can't stop", ended=False), rule.first_word(" it's", ended=True)
('ca', 'it')
>>> rule.first_word(" well-known fact", ended=False), rule.first_word(", and", ended=False)
('well-known', '<no-word>')
>>> rule.first_word("re is", ended=False), rule.first_word(" mat", ended=False) is None
('<no-word>', True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .normalize import NO_WORD, Normalizer

__all__ = ["WordRule", "DEFAULT_WORD_RULE", "CONTRACTION_MODES", "CONTRACTION_HOSTS", "describe_word_rule"]

#: ``split``: Treebank-style (``can't -> ca``, ``it's -> it``), as the Provo answers; ``keep``: ``it's``.
CONTRACTION_MODES = {
    "split": "contractions split Treebank-style, first part kept (can't -> ca, don't -> do, it's -> it)",
    "keep": "inner apostrophes kept (it's, can't)",
}
#: Words that Treebank splitting leaves as the first part of an ``n't`` contraction.
CONTRACTION_HOSTS = ("ai", "are", "ca", "could", "dare", "did", "does", "do", "had", "has", "have", "is", "might",
                     "must", "need", "sha", "should", "was", "were", "wo", "would")
_APOSTROPHES = ("'", "\u2019")
_HYPHEN = "-"
_PROBE_TAILS = (" ", "a")  # what may follow a token: a word end, or more letters


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "\ufffd"  # a partial UTF-8 byte is part of a character still being decoded


@dataclass(frozen=True)
class WordRule:
    """Where the next word starts and ends (see the module docstring).

    Args:
        contractions: ``"split"`` (default, as the Provo answers) or ``"keep"``.
        inner_hyphens: keep a hyphen between two letters/digits inside the word. Default ``True``.
        normalizer: turns the cut word into the outcome (default :class:`Normalizer` settings).
    """

    contractions: str = "split"
    inner_hyphens: bool = True
    normalizer: Normalizer = Normalizer()

    def __post_init__(self):
        if self.contractions not in CONTRACTION_MODES:
            raise ValueError(f"`contractions`={self.contractions!r}: expected one of {', '.join(CONTRACTION_MODES)}")

    # ------------------------------------------------------------------ the one definition

    def cut(self, text: str, *, ended: bool, lead: str = " ") -> str | None:
        """The raw first word of a continuation, ``""`` for a failure, ``None`` while undecided.

        Args:
            text: the decoded continuation (for a plain context it starts right after the context).
            ended: the sequence ended after ``text`` (EOS or another special token).
            lead: what must precede the word: ``" "`` after a plain context, ``""`` after a chat prompt.

        Returns:
            The word as written (not normalised); ``""`` when the continuation opens no word (wrong
            lead, punctuation first, nothing); ``None`` when more text could still change the answer.
        """
        if not text.startswith(lead):
            return "" if ended or len(text) >= len(lead) or not lead.startswith(text) else None
        body = text[len(lead):]
        if not body:
            return "" if ended else None
        if not body[0].isalnum():
            return ""
        i, n = 0, len(body)
        while i < n:
            ch = body[i]
            if _is_word_char(ch):
                i += 1
                continue
            if ch in _APOSTROPHES and self.contractions == "split":
                return self._split_contraction(body, i, ended)
            joins = (ch == _HYPHEN and self.inner_hyphens) or (ch in _APOSTROPHES and self.contractions == "keep")
            if not joins:
                return body[:i]
            if i + 1 == n:  # a joiner at the end: what comes next decides
                return body[:i] if ended else None
            if not _is_word_char(body[i + 1]):
                return body[:i]
            i += 1
        return body if ended else None

    def _split_contraction(self, body: str, i: int, ended: bool) -> str | None:
        """Treebank: ``xn't`` -> ``x``; any other apostrophe ends the word before it."""
        if i >= 2 and body[i - 1] in "nN" and _is_word_char(body[i - 2]):
            tail = body[i + 1: i + 2]
            if tail in ("t", "T"):  # "n't", whatever follows
                return body[: i - 1]
            if not tail:
                return body[:i] if ended else None
        return body[:i]

    def first_word(self, text: str, *, ended: bool, lead: str = " ") -> str | None:
        """The outcome of a continuation: its normalised first word, :data:`NO_WORD`, or ``None`` if undecided."""
        raw = self.cut(text, ended=ended, lead=lead)
        if raw is None:
            return None
        word = self.normalizer(raw) if raw else ""
        return word or NO_WORD

    # ------------------------------------------------------------------ derived: scorer masks, surface forms

    def ends_word(self, word: str, token_text: str) -> bool:
        """True when ``token_text`` right after ``word`` leaves ``word`` as the outcome, whatever follows.

        ``word`` is the spelling as the scorer tokenises it; special tokens (EOS...) always end a
        word and are not passed here.
        """
        outcomes = {self.cut(" " + word + token_text + tail, ended=True) for tail in _PROBE_TAILS}
        return outcomes == {word}

    def word_end_class(self, word: str) -> int:
        """Which end-of-word mask applies after ``word``: 1 when it ends in ``n`` (``n't``), else 0."""
        return int(self.contractions == "split" and word[-1:] in ("n", "N"))

    #: One probe word per :meth:`word_end_class`.
    PROBES = ("ab", "an")

    def surface_forms(self, word: str) -> list[str]:
        """Spellings whose probabilities add up to the normalised ``word``: the word itself, its
        Capitalised form and (contraction hosts) the ``n't`` spelling, each kept only if this rule
        cuts and normalises it back to ``word``.

        >>> WordRule().surface_forms("ca")
        ['ca', 'Ca', "can't", "Can't"]
        """
        cands = [word, word[:1].upper() + word[1:]]
        if self.contractions == "split" and word in CONTRACTION_HOSTS:
            spelled = {"ca": "can", "wo": "won", "sha": "shan", "ai": "ain"}.get(word, word + "n") + "'t"
            cands += [spelled, spelled[:1].upper() + spelled[1:]]
        out = []
        for form in cands:
            if form not in out and self.first_word(" " + form + " ", ended=True) == word:
                out.append(form)
        return out

    def to_dict(self) -> dict:
        """The settings as a plain dict (recorded in summaries and cards)."""
        return asdict(self)


DEFAULT_WORD_RULE = WordRule()


def describe_word_rule(rule: WordRule = DEFAULT_WORD_RULE) -> str:
    """One sentence for cards and summaries."""
    hy = "inner hyphens kept (well-known)" if rule.inner_hyphens else "hyphens end a word"
    return (f"first word after one space (plain) or at the start of the response (chat); letters and digits, "
            f"{hy}, {CONTRACTION_MODES[rule.contractions]}; punctuation first, no space or no word = failure")
