"""Word boundaries: which next tokens end a word (:class:`WordEnd`, the ``E``/``B`` terms) and which begin one
(:class:`WordBegin`, the ``S`` term), under the sampler's word rule or Pimentel & Meister's (wordsprobability's)
space-marker rule; cached per tokenizer."""

from __future__ import annotations

import string
import weakref
from dataclasses import dataclass

import torch

from ..data.words import DEFAULT_WORD_RULE, WordRule, _is_word_char
from ..errors import InputError

_END_MASKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_SPACE_MARKERS = ("\u0120", "\u010a", "\u0109", "\u010d", "\u2581")  # Ġ Ċ ĉ č ▁ (space/newline/tab)


def _class_log_mass(logp_rows: torch.Tensor, weights: torch.Tensor, cls: torch.Tensor, rows=None) -> torch.Tensor:
    """``log sum_v weights[cls[i], v] * p(v | row rows[i])`` for each i: one ``(N, V) @ (V, C)`` product.

    ``weights`` (C, V) boolean or float; ``rows`` (default ``range(len(cls))``) picks the row of each i.
    """
    device = logp_rows.device
    w = weights.to(device=device, dtype=torch.float32)
    idx = torch.arange(len(cls), device=device) if rows is None else torch.as_tensor(rows, dtype=torch.long,
                                                                                      device=device)
    used = torch.unique(idx)
    if len(used) < logp_rows.shape[0] // 2:  # few rows needed: do not exponentiate the others
        probs = logp_rows[used].float().exp()
        idx = torch.searchsorted(used, idx)
    else:
        probs = logp_rows.float().exp()
    mass = (probs @ w.T)[idx, cls]
    floor = 1e-30  # far above float32's denormals: a smaller mass is recomputed in log space
    out = torch.log(mass.clamp_min(floor))  # clamped: no 0/0 in the backward of the rows recomputed below
    tiny = mass < floor
    if bool(tiny.any()):  # underflow: the exact masked log-sum-exp for those few rows
        where = torch.as_tensor(rows, device=device)[tiny] if rows is not None else tiny.nonzero()[:, 0]
        exact = torch.logsumexp(logp_rows[where].float() + torch.log(w[cls[tiny]]), dim=-1)
        out = out.masked_scatter(tiny, exact)
    return out


@dataclass(frozen=True)
class WordEnd:
    """Which next tokens end a word, derived from a :class:`~varylm_hf.data.words.WordRule`.

    Attributes:
        masks: boolean ``(C, V)``; row ``c`` marks the tokens that, right after a word of end class
            ``c``, leave that word as the outcome (``WordRule.word_end_class``: ``n``-final words
            differ because ``n't`` takes their ``n``). Special tokens (EOS...) end every word.
        token_class: long ``(V,)``: the end class of a word whose last token is ``v``.
    """

    masks: torch.Tensor
    token_class: torch.Tensor

    def padded(self, vocab_size: int) -> "WordEnd":
        """The same masks padded with False (class 0) up to the model's logits size."""
        n = self.masks.shape[1]
        if vocab_size == n:
            return self
        m = min(vocab_size, n)
        masks = torch.zeros(self.masks.shape[0], vocab_size, dtype=torch.bool)
        masks[:, :m] = self.masks[:, :m]
        cls = torch.zeros(vocab_size, dtype=torch.long)
        cls[:m] = self.token_class[:m]
        return WordEnd(masks, cls)

    def term(self, logp_rows: torch.Tensor, last_tokens, rows=None) -> torch.Tensor:
        """``log P(next token ends the word)`` per word, given each word's last token.

        ``logp_rows`` (N, V) are log-probabilities; the word ``i`` reads row ``rows[i]`` (default: row ``i``).
        The end mass of every row and class is one product ``exp(logp) @ masks.T`` (no (E, V) copy or
        masked fill); a mass that underflows to 0 is recomputed as a masked log-sum-exp.
        """
        device = logp_rows.device
        cls = self.token_class.to(device)[torch.as_tensor(last_tokens, dtype=torch.long, device=device)]  # (E,)
        return _class_log_mass(logp_rows, self.masks, cls, rows)


def _as_word_end(value) -> WordEnd:
    if isinstance(value, WordEnd):
        return value
    mask = torch.as_tensor(value, dtype=torch.bool)  # one class: a plain (V,) mask
    return WordEnd(mask[None], torch.zeros(mask.shape[-1], dtype=torch.long))


def _token_texts(tokenizer, n: int) -> list[str]:
    """Each token's text as it reads after a word (a space marker becomes a real space)."""
    ids = list(range(n))
    tokens = tokenizer.convert_ids_to_tokens(ids)
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    out = []
    for tok, text in zip(tokens, texts):
        tok = tok or ""
        if tok[:1] in _SPACE_MARKERS and not text[:1].isspace():
            text = (" " if tok[0] in ("\u0120", "\u2581") else "\n") + text  # SentencePiece drops a leading space
        out.append(text)
    return out


def word_end_masks(tokenizer, vocab_size: int | None = None, rule: WordRule = DEFAULT_WORD_RULE) -> WordEnd:
    """End-of-word masks of ``tokenizer`` under ``rule`` (the sampler's word definition), cached per tokenizer.

    A token ends the word before it when :meth:`WordRule.ends_word` says so for its text (a space,
    ``.``, ``,``, ``'s``...; not ``re`` after ``the``, not ``-known`` after ``well``, not ``'t`` after
    ``can``), or when it is a special token (EOS, end of turn, SmolLM2's ``<|endoftext|>``...: the sampler
    stops at every special token).
    ``vocab_size`` pads the masks up to the model's logits size.
    """
    try:
        cached = _END_MASKS.get(tokenizer, {}).get(rule)
    except TypeError:
        cached = None
    if cached is None:
        n = len(tokenizer)
        texts = _token_texts(tokenizer, n)
        masks = torch.tensor([[rule.ends_word(probe, t) for t in texts] for probe in rule.PROBES], dtype=torch.bool)
        for i in set(tokenizer.all_special_ids):  # the sampler stops at every special token (unk too)
            if i is not None and 0 <= i < n:
                masks[:, i] = True
        cls = torch.tensor([rule.word_end_class(t.strip() or "x") for t in texts], dtype=torch.long)
        cached = WordEnd(masks, cls)
        try:
            _END_MASKS.setdefault(tokenizer, {})[rule] = cached
        except TypeError:
            pass
    return cached if vocab_size is None else cached.padded(vocab_size)


def word_start_mask(tokenizer, vocab_size: int | None = None) -> torch.Tensor:
    """Boolean ``(V,)``: tokens that end a word not ending in ``n`` (row 0 of :func:`word_end_masks`)."""
    return word_end_masks(tokenizer, vocab_size).masks[0]


@dataclass(frozen=True)
class WordBegin:
    """How much each next token counts as "a new word starts" (the ``S`` term of ``definition="pm"``).

    Attributes:
        weights: float ``(2, V)``; row 0 after a word (the context ends a word), row 1 at the start of a
            text (empty context: wordsprobability's beginning-of-sentence correction). Weights are the
            wordsprobability mask sums, so a token can weigh 2 there (its EOS is counted twice in row 1).
        is_bow: boolean ``(V,)``: the token begins a word (spelled with the space marker); running text
            starts a new word at every such token.
    """

    weights: torch.Tensor
    is_bow: torch.Tensor

    def padded(self, vocab_size: int) -> "WordBegin":
        """The same weights padded with 0 (and ``is_bow`` with False) up to the model's logits size."""
        n = self.weights.shape[1]
        if vocab_size == n:
            return self
        m = min(vocab_size, n)
        w = torch.zeros(self.weights.shape[0], vocab_size, dtype=self.weights.dtype)
        w[:, :m] = self.weights[:, :m]
        b = torch.zeros(vocab_size, dtype=torch.bool)
        b[:m] = self.is_bow[:m]
        return WordBegin(w, b)

    def term(self, logp_rows: torch.Tensor, classes, rows=None) -> torch.Tensor:
        """``log sum_v weight[class, v] p(v)`` per word; the word ``i`` reads row ``rows[i]`` (default ``i``)."""
        device = logp_rows.device
        return _class_log_mass(logp_rows, self.weights, torch.as_tensor(classes, dtype=torch.long, device=device),
                               rows)

    def classes(self, first_tokens, text_start) -> list[int]:
        """Row of :attr:`weights` per word: 1 for a first word of a text whose first token is not space-marked."""
        return [int(bool(s) and not bool(self.is_bow[t])) for t, s in zip(first_tokens, text_start)]


_PM_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def bow_symbol(tokenizer) -> str:
    """The space marker of the tokenizer's vocabulary: ``"Ġ"`` (byte-level BPE) or ``"▁"`` (SentencePiece)."""
    ids = tokenizer(" a", add_special_tokens=False)["input_ids"]
    first = (tokenizer.convert_ids_to_tokens(ids[:1]) or [""])[0] or ""
    for sym in ("\u0120", "\u2581"):
        if first.startswith(sym):
            return sym
    vocab = tokenizer.get_vocab()
    for sym in ("\u0120", "\u2581"):
        if any(w.startswith(sym) for w in vocab):
            return sym
    raise InputError("the tokenizer marks no word starts (no token begins with Ġ or ▁): "
                     "Pimentel & Meister's correction needs a space-marked vocabulary")


def pm_boundary(tokenizer, vocab_size: int | None = None) -> tuple[WordEnd, WordBegin]:
    """Pimentel & Meister's word boundary exactly as wordsprobability 0.17 computes it (cached per tokenizer).

    * a word begins at a token whose vocabulary string starts with the space marker (``Ġ``/``▁``);
    * ``E`` (end of word) and row 0 of ``S``: the mass of those tokens plus EOS (``tokenizer.eos_token_id``);
    * row 1 of ``S`` (first word of a text): "mid-word" + punctuation-initial + EOS tokens, where mid-word =
      1 - space-marked - punctuation-initial - (ids >= ``tokenizer.vocab_size``), EOS never counted as
      punctuation -- so EOS weighs 2 when it is inside ``tokenizer.vocab_size`` (as in wordsprobability).

    ``vocab_size``: the model's logits size (default ``len(tokenizer)``).
    """
    n = vocab_size or len(tokenizer)
    try:
        cached = _PM_CACHE.get(tokenizer, {}).get(n)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    sym = bow_symbol(tokenizer)
    vocab = tokenizer.get_vocab()
    bow = torch.zeros(n)
    punct = torch.zeros(n)
    for word, idx in vocab.items():
        if 0 <= idx < n and word:
            if word[0] == sym:
                bow[idx] = 1
            if word[0] in string.punctuation:
                punct[idx] = 1
    eos = torch.zeros(n)
    eos_id = tokenizer.eos_token_id
    if eos_id is not None and 0 <= eos_id < n:
        punct[eos_id] = 0
        eos[eos_id] = 1
    useless = torch.zeros(n)
    useless[min(n, tokenizer.vocab_size):] = 1
    mid = 1 - bow - punct - useless
    weights = torch.stack([bow + eos, mid + punct + eos])
    cached = (WordEnd((bow + eos)[None] > 0, torch.zeros(n, dtype=torch.long)), WordBegin(weights, bow > 0))
    try:
        _PM_CACHE.setdefault(tokenizer, {})[n] = cached
    except TypeError:
        pass
    return cached


def wordrule_begin(tokenizer, vocab_size: int | None = None, rule: WordRule = DEFAULT_WORD_RULE) -> WordBegin:
    """``S`` under the sampler's word rule: row 0 the tokens that open a word after a context (one space,
    then a letter or digit), row 1 the tokens that open one at the start of a text (a letter or digit)."""
    n = vocab_size or len(tokenizer)
    m = min(n, len(tokenizer))
    texts = _token_texts(tokenizer, m)
    special = set(tokenizer.all_special_ids)
    w = torch.zeros(2, n)
    for i, t in enumerate(texts):
        if i in special:
            continue
        if len(t) > 1 and t[0] == " " and _is_word_char(t[1]):
            w[0, i] = 1
        if t[:1] and _is_word_char(t[0]):
            w[1, i] = 1
    is_bow = torch.zeros(n, dtype=torch.bool)
    is_bow[:m] = torch.tensor([t[:1].isspace() for t in texts], dtype=torch.bool)
    return WordBegin(w, is_bow)
