"""Word log-probabilities log q(w|c) for many (context, word) pairs, with prefix sharing.

A word is scored as it would appear after its context (GPT-2 BPE ``" word"``, SentencePiece
``"▁word"``; no space before closing punctuation), so

    log q(w|c) = sum_j log q(t_j | c, t_<j)                      definition="paper"  (eq. 3)
    log q(w|c) = sum_j log q(t_j | c, t_<j) + log B(c, t_1..t_n)  definition="eow"

where ``B`` is the probability that the token after the word ends it under the sampler's word
rule (:mod:`varylm_hf.data.words`, Pimentel & Meister 2024's end-of-word term): a space, most
punctuation (``.``, ``,``, ``'s``) or a special token such as EOS -- but not ``re`` after
``the``, ``-known`` after ``well`` nor ``'t`` after ``can`` (``can't`` is the word ``ca``, as
in the Provo answers). Example: after "The cat sat on", ``q_paper(" the")`` has the mass of every
continuation that starts with the token ``" the"``, including ``" there"`` spelled ``" the" +
"re"``; ``q_eow(" the")`` keeps only the part where the word ends there. So ``q_eow <= q_paper``,
and ``q_eow`` is the probability of the sampler's outcome: exact TVD lives on the sampler's
outcome space (a continuation that does not open a new word is a failure, left as residual
mass). It is not the full Pimentel & Meister word probability, which also divides by the
probability that a new word starts after the context: that is the third definition,

    log q(w|c) = paper + log E(c, w) - log S(c)                  definition="pm"

with ``E`` the probability that the word ends after its last token and ``S`` the probability that a
new word starts after the context (``boundary="pm"``, the default: both as wordsprobability 0.17
computes them -- a token spelled with the space marker ``Ġ``/``▁`` or EOS; the first word of a text,
after an empty context, divides by the mass of the tokens that are not space-marked instead, their
"beginning-of-sentence correction"; :func:`pm_boundary`). ``boundary="wordrule"`` takes ``E`` from
the sampler's word rule (as ``eow``) and ``S`` from the same rule (a space and a letter/digit
first). ``pm`` is not in :data:`DEFINITIONS` (the training definitions); it is in
:data:`WORD_DEFINITIONS`. See docs/surprisal.md.

Strategies (all give the same numbers, to float rounding; see tests/test_scoring.py):

* ``pair``: one sequence per (context, word); the brute force reference.
* ``context``: one forward per context; its words reuse the KV cache (fallback for models
  whose attention refuses 4D masks, e.g. flash-attention).
* ``tree``: each context and its words form a token trie (words sharing tokens share nodes);
  tries are packed into rows and run in ONE forward with a float additive 4D mask
  (0 / finfo.min) of shape (B, 1, Q, K) and explicit position ids.
* ``passage``: like ``tree``, but all contexts of a batch go into one trie, so contexts that
  are token prefixes of each other (the contexts of one Provo passage) share one trunk. The
  prefix property is checked on the token ids; a context whose tokenisation breaks it simply
  gets its own branch from the first differing token. Without gradients (scoring, evaluation) the
  contexts' trunk runs once with a KV cache and the word branches in chunks of 256 tokens that attend
  to it, so attention grows with branches x (trunk + chunk), not with the square of the whole trie;
  with gradients (training) the merged trie runs in one forward, which backpropagates faster on CPU.

Only the positions whose next-token distribution is needed reach the LM head
(``logits_to_keep`` with a boolean mask or position indices), which matters for 50k-token vocabularies.
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..conditioning import first_token_id
from ..data.words import DEFAULT_WORD_RULE, WordRule
from ..errors import InputError
from ..options import BOUNDARIES, STRATEGIES, TRAINING_DEFINITIONS, WORD_DEFINITIONS

__all__ = [
    "DEFINITIONS",
    "WORD_DEFINITIONS",
    "BOUNDARIES",
    "STRATEGIES",
    "WordBegin",
    "pm_boundary",
    "wordrule_begin",
    "bow_symbol",
    "word_token_ids",
    "context_token_ids",
    "word_start_mask",
    "word_end_masks",
    "WordEnd",
    "encode_batch",
    "WordScorer",
    "supports_tree_attention",
    "score_token_ids",
    "score_words",
    "word_logprobs",
    "word_loss",
]

#: The training definitions; :data:`WORD_DEFINITIONS` (every definition :func:`score_words` takes, with ``pm``),
#: :data:`BOUNDARIES` and :data:`STRATEGIES` are declared once in :mod:`varylm_hf.options`.
DEFINITIONS = TRAINING_DEFINITIONS

# A word starting with one of these is joined to its context without a space.
_NO_SPACE_BEFORE = set(".,;:!?)]}%'\u2019")
_DEFAULT_ROW_TOKENS = 2048


# --------------------------------------------------------------------------- tokenisation


def _check_word(word: str) -> str:
    if not isinstance(word, str) or not word.strip():
        raise InputError(f"word {word!r}: expected a non-empty string")
    return word.strip()


def _joined(context: str, word: str) -> tuple[str, str]:
    context = context.rstrip()
    sep = "" if not context or word[0] in _NO_SPACE_BEFORE else " "
    return context, context + sep + word


def word_token_ids(tokenizer, context: str, word: str) -> list[int]:
    """Token ids of ``word`` as it appears right after ``context``.

    The context loses its trailing whitespace and is joined to the word by one space (none
    before closing punctuation such as ``,`` or ``'s``, none when the context is empty). The
    ids are the suffix of ``tokenize(context + " " + word)`` after ``tokenize(context)``; if a
    tokenizer merges across that boundary (the prefix property fails), the word is tokenised
    on its own with its leading space and a warning is issued.

    >>> # GPT-2: word_token_ids(tok, "The cat sat on", "mat") == tok(" mat").input_ids
    """
    word = _check_word(word)
    context, text = _joined(context, word)
    ids_c = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    ids_cw = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids_cw) > len(ids_c) and ids_cw[: len(ids_c)] == ids_c:
        return list(ids_cw[len(ids_c):])
    warnings.warn(
        f"tokenizer merges the word {word!r} with the end of its context {context[-20:]!r}; "
        "scoring the word tokenised on its own",
        stacklevel=2,
    )
    sep = text[len(context): len(text) - len(word)]
    return list(tokenizer(sep + word, add_special_tokens=False)["input_ids"])


def context_token_ids(tokenizer, context: str, *, bos: str | None = "auto", prompt_ids=None,
                      max_context_tokens: int | None = None) -> list[int]:
    """Token ids of a context: ``[first token] + prompt_ids + context tokens`` (context cut from the left).

    Args:
        bos: the first token (:func:`varylm_hf.conditioning.first_token_id`): ``"auto"`` (the
            tokenizer's own BOS if it adds one, else the document separator such as ``<|endoftext|>``),
            ``"none"``/``None`` or a token. A context with neither first token, prompt nor text
            falls back to the EOS token.
        prompt_ids: token ids placed before every context (never truncated).
        max_context_tokens: keep at most this many context tokens (the last ones).
    """
    ids = tokenizer(context.rstrip(), add_special_tokens=False)["input_ids"] if context.strip() else []
    if max_context_tokens is not None and len(ids) > max_context_tokens:
        ids = ids[len(ids) - max_context_tokens:] if max_context_tokens > 0 else []
    head = []
    first = first_token_id(tokenizer, bos)
    if first is not None:
        head.append(first)
    head.extend(prompt_ids or [])
    out = head + list(ids)
    if not out:
        if tokenizer.eos_token_id is None:
            raise InputError(
                f"context {context!r} is empty and the tokenizer has no BOS/EOS token to condition on"
            )
        out = [tokenizer.eos_token_id]
    return out


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
    import string

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
    from ..data.words import _is_word_char

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


# --------------------------------------------------------------------------- model helpers


def _unwrap(model):
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP / accelerate
        model = model.module
    return model


def _forward_params(model) -> set:
    inner = _unwrap(model)
    base = getattr(inner, "get_base_model", None)  # peft
    target = base() if callable(base) else inner
    return set(inspect.signature(target.forward).parameters)


def _model_max_positions(model) -> int | None:
    cfg = _unwrap(model).config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _model_dtype_device(model):
    inner = _unwrap(model)
    dtype = getattr(inner, "dtype", None)
    if dtype is None or not dtype.is_floating_point:
        dtype = next(p.dtype for p in inner.parameters() if p.dtype.is_floating_point)
    device = next(inner.parameters()).device
    return dtype, device


def supports_tree_attention(model) -> bool:
    """True when the model's attention implementation takes a float 4D mask (eager, sdpa)."""
    impl = getattr(_unwrap(model).config, "_attn_implementation", None)
    return impl in (None, "eager", "sdpa")


def _logits_at(model, input_ids, keep, params, **kw) -> torch.Tensor:
    """Logits (N, V) at the True positions of the boolean (B, T) ``keep`` mask, row-major."""
    if "logits_to_keep" in params:
        logits = model(input_ids=input_ids, logits_to_keep=keep, use_cache=False, **kw).logits
        if logits.dim() == 2:
            return logits
    else:
        logits = model(input_ids=input_ids, use_cache=False, **kw).logits
    return logits[keep]


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


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


# --------------------------------------------------------------------------- strategies


def _inputs_of(word: list[int], eow: bool) -> list[int]:
    """Tokens the model must read for a word: all of them for eow, all but the last for paper."""
    return list(word) if eow else list(word[:-1])


def _score_pair(model, context_ids, word_ids, eow, start_mask, batch_size, begin=None, begin_cls=None):
    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    pairs = [(i, j) for i, ws in enumerate(word_ids) for j in range(len(ws))]
    flat_index = {p: n for n, p in enumerate(pairs)}
    results = [None] * len(pairs)
    batch_size = batch_size or 16
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start: start + batch_size]
        seqs = [context_ids[i] + _inputs_of(word_ids[i][j], eow) for i, j in chunk]
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        att = torch.zeros(len(seqs), T, dtype=torch.long)
        keep = torch.zeros(len(seqs), T, dtype=torch.bool)
        for b, ((i, j), s) in enumerate(zip(chunk, seqs)):
            ids[b, : len(s)] = torch.tensor(s)
            att[b, : len(s)] = 1
            keep[b, len(context_ids[i]) - 1: len(s)] = True
        pos = torch.arange(T).expand(len(seqs), T)
        logits = _logits_at(model, ids.to(device), keep.to(device), params,
                            attention_mask=att.to(device), position_ids=pos.to(device))
        logp = _log_softmax(logits)
        # row-major order of keep: per sequence, its query positions in order
        q_row, q_tok, q_word, eow_rows, eow_word = [], [], [], [], []
        r = 0
        for b, (i, j) in enumerate(chunk):
            w = word_ids[i][j]
            for m, t in enumerate(w):
                q_row.append(r + m)
                q_tok.append(t)
                q_word.append(b)
            if eow:
                eow_rows.append(r + len(w))
                eow_word.append(b)
            r += int(keep[b].sum())
        vals = _gather(logp, q_row, q_tok, q_word, len(chunk), eow_rows, eow_word, start_mask, logp, begin,
                       [begin_cls[i][j] for i, j in chunk] if begin is not None else None)
        for b, p in enumerate(chunk):
            results[flat_index[p]] = vals[b]
    return _split(results, word_ids)


def _cache_kwarg(params: set) -> str:
    return "cache" if "cache" in params else "past_key_values"


def _score_context(model, context_ids, word_ids, eow, start_mask, begin=None, begin_cls=None):
    from transformers import DynamicCache

    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    cache_kw = _cache_kwarg(params)
    config = _unwrap(model).config
    out = []
    for ctx, words in zip(context_ids, word_ids):
        if not words:
            out.append(torch.zeros(0, device=device))
            continue
        L = len(ctx)
        cache = DynamicCache(config=config)
        ids = torch.tensor([ctx], device=device)
        first = model(input_ids=ids, position_ids=torch.arange(L, device=device)[None],
                      attention_mask=torch.ones_like(ids), use_cache=True, **{cache_kw: cache}).logits[0, -1]
        first_lp = _log_softmax(first)  # (V,)
        branches = [(j, _inputs_of(w, eow)) for j, w in enumerate(words)]
        branches = [(j, b) for j, b in branches if b]
        values = [first_lp[w[0]] for w in words]
        values = [v.clone() for v in values]
        if begin is not None:
            b_term = begin.term(first_lp[None].expand(len(words), -1), begin_cls[len(out)])
            values = [v - b_term[j] for j, v in enumerate(values)]
        if branches:
            m = max(len(b) for _, b in branches)
            nb = len(branches)
            bids = torch.zeros(nb, m, dtype=torch.long)
            for r, (_, b) in enumerate(branches):
                bids[r, : len(b)] = torch.tensor(b)
            cache.batch_repeat_interleave(nb)
            logits = model(input_ids=bids.to(device), attention_mask=torch.ones(nb, L + m, dtype=torch.long, device=device),
                           position_ids=(L + torch.arange(m, device=device)).expand(nb, m),
                           use_cache=True, **{cache_kw: cache}).logits  # (nb, m, V)
            logp = _log_softmax(logits)
            for r, (j, b) in enumerate(branches):
                w = words[j]
                extra = logp[r, torch.arange(len(w) - 1, device=device), torch.tensor(w[1:], dtype=torch.long, device=device)].sum()
                if eow:
                    extra = extra + start_mask.term(logp[r, len(w) - 1][None], [w[-1]])[0]
                values[j] = values[j] + extra
        out.append(torch.stack(values))
    return out


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
    return _words_from_logits(logits, qrow, queries, word_ids, start_mask, begin, begin_cls)


def _words_from_logits(logits, qrow, queries, word_ids, start_mask, begin, begin_cls):
    """Per-context word log-probs from the logits of the needed trie nodes (``qrow``: node -> logits row)."""
    logp = _log_softmax(logits)
    q_row, q_tok, q_word, eow_rows, eow_word = [], [], [], [], []
    for k, (q, e) in enumerate(queries):
        for n, t in q:
            q_row.append(qrow[n])
            q_tok.append(t)
            q_word.append(k)
        if e is not None:
            eow_rows.append(qrow[e])
            eow_word.append(k)
    vals = _gather(logp, q_row, q_tok, q_word, len(queries), eow_rows, eow_word, start_mask, logp, begin,
                   [c for per in begin_cls for c in per] if begin is not None else None)
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


def _forward_rows(model, ids, pos, mask, keep_idx, params, device, **kw):
    """Logits (K, V) of one row at the positions ``keep_idx`` (a forward with a 4D mask, maybe a cache)."""
    ids_t = torch.tensor([ids], device=device)
    pos_t = torch.tensor([pos], device=device)
    keep_t = torch.tensor(keep_idx, dtype=torch.long, device=device)
    if "logits_to_keep" in params and keep_idx:
        logits = model(input_ids=ids_t, position_ids=pos_t, attention_mask=mask.to(device), logits_to_keep=keep_t,
                       **kw).logits
        return logits[0]
    logits = model(input_ids=ids_t, position_ids=pos_t, attention_mask=mask.to(device), **kw).logits
    return logits[0, keep_t]


def _score_trunk(model, context_ids, word_ids, eow, start_mask, chunk_tokens, begin=None, begin_cls=None):
    """The ``passage`` strategy: one merged trie, its context trunk run once with a KV cache, then the word
    branches in chunks of about ``chunk_tokens`` that attend to the cached trunk.

    Attention then costs (branch tokens x (trunk + chunk)) instead of (all nodes)^2, and no trunk token is
    computed twice. Equal to one forward over the whole trie (``_score_tree``) up to float rounding.
    """
    from transformers import DynamicCache

    dtype, device = _model_dtype_device(model)
    params = _forward_params(model)
    cache_kw = _cache_kwarg(params)
    tok, parent, depth, tree, queries, n_trunk = _build_forest(context_ids, word_ids, eow, True)
    needed = {n for q, e in queries for n, _ in q} | {e for _, e in queries if e is not None}
    trunk = list(range(n_trunk))
    trunk_allowed = _ancestor_mask(parent, trunk, {n: n for n in trunk})
    keep = [n for n in trunk if n in needed]
    cache = DynamicCache(config=_unwrap(model).config)
    parts, order = [], list(keep)
    parts.append(_forward_rows(model, [tok[n] for n in trunk], [depth[n] for n in trunk],
                               _float_mask(trunk_allowed, dtype), keep, params, device, use_cache=True,
                               **{cache_kw: cache}))
    trunk_kv = [(layer.keys, layer.values) for layer in cache.layers]
    if not trunk_kv or any(k is None for k, _ in trunk_kv):  # the model did not fill the cache (checkpointing...)
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
    for nodes in chunks:
        local = {n: i for i, n in enumerate(nodes)}
        allowed = np.concatenate([trunk_allowed[[parent[root[n]] for n in nodes]],
                                  _ancestor_mask(parent, nodes, local)], axis=1)
        branch_cache = DynamicCache(config=_unwrap(model).config)
        for i, (k, v) in enumerate(trunk_kv):
            branch_cache.update(k, v, i)
        keep = [n for n in nodes if n in needed]
        if not keep:
            continue
        parts.append(_forward_rows(model, [tok[n] for n in nodes], [depth[n] for n in nodes],
                                   _float_mask(allowed, dtype), [local[n] for n in keep], params, device,
                                   use_cache=True, **{cache_kw: branch_cache}))
        order.extend(keep)
    qrow = {n: i for i, n in enumerate(order)}
    return _words_from_logits(torch.cat(parts, 0), qrow, queries, word_ids, start_mask, begin, begin_cls)


#: Word-branch tokens per forward of the ``passage`` strategy (each attends to the cached trunk + its chunk).
_BRANCH_CHUNK_TOKENS = 256


def _split(values: list, word_ids) -> list[torch.Tensor]:
    out, k = [], 0
    device = values[0].device if values else None
    for words in word_ids:
        n = len(words)
        out.append(torch.stack(values[k: k + n]) if n else torch.zeros(0, device=device))
        k += n
    return out


# --------------------------------------------------------------------------- public API


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
        definition: ``"paper"``, ``"eow"`` or ``"pm"`` (module docstring).
        word_start_mask: the end-of-word tokens, required for ``"eow"`` and ``"pm"``: a :class:`WordEnd` from
            :func:`word_end_masks` (the sampler's word rule) or :func:`pm_boundary`, or one boolean ``(V,)`` mask.
        strategy: one of :data:`STRATEGIES`; ``tree``/``passage`` fall back to ``context`` when
            the model's attention refuses 4D masks.
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
    if strategy in ("tree", "passage") and not supports_tree_attention(model):
        strategy = "context"
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


def encode_batch(tokenizer, contexts: Sequence[str], words: Sequence[Sequence[str]], *, model=None,
                 max_context_tokens: int | None = None, prompt_ids=None, bos: str | None = "auto", eow: bool = False,
                 max_positions: int | None = None):
    """Tokenise contexts and their words for :func:`score_token_ids`.

    Contexts are cut from the left so that context + longest word fits the model's position
    limit (read from ``model``, or given as ``max_positions``); ``max_context_tokens`` caps the
    context part further. ``prompt_ids`` is one id list for all contexts or one per context.

    Returns:
        ``(context_ids, word_ids)`` for :func:`score_token_ids`.

    Raises:
        InputError: an empty word, or a word too long for the model's context window.
    """
    if len(contexts) != len(words):
        raise InputError(f"{len(contexts)} contexts but {len(words)} word lists")
    limit = _model_max_positions(model) if model is not None else max_positions
    per_context_prompt = bool(prompt_ids) and isinstance(prompt_ids[0], (list, tuple))
    ctx_ids, w_ids = [], []
    for i, (context, ws) in enumerate(zip(contexts, words)):
        toks = [word_token_ids(tokenizer, context, w) for w in ws]
        prompt = prompt_ids[i] if per_context_prompt else prompt_ids
        budget = max_context_tokens
        if limit is not None:
            head = (0 if first_token_id(tokenizer, bos) is None else 1) + len(prompt or [])
            longest = max((len(t) for t in toks), default=0) + (0 if eow else -1)
            room = limit - head - longest
            if room < 1:
                raise InputError(
                    f"context {i}: word {ws[max(range(len(toks)), key=lambda k: len(toks[k]))]!r} "
                    f"({longest} tokens) leaves no room for the context in the model's {limit} positions"
                )
            budget = room if budget is None else min(budget, room)
        ctx_ids.append(context_token_ids(tokenizer, context, bos=bos, prompt_ids=prompt,
                                         max_context_tokens=budget))
        w_ids.append(toks)
    return ctx_ids, w_ids


class WordScorer:
    """The word-scoring engine as an object: a causal LM and its tokenizer, with the word-probability
    definition, the strategy, the word rule, the word boundary and the first-token rule fixed once (the
    end-of-word and word-begin masks are built once, at construction).

    Two ways in: :meth:`score` takes context strings (conditioned by :mod:`varylm_hf.conditioning`, optionally
    after per-context ``prompt_ids``), :meth:`score_prepared` takes prepared conditioning -- any token ids the
    words follow (a chat prompt ending where the answer starts, a 1-shot prompt...), the words tokenised as they
    start a text or a response (no leading space). :func:`score_words` is ``WordScorer(...).score(...)``.

    Example (``model, tokenizer`` from :func:`varylm_hf.modeling.load_model_and_tokenizer`)::

        scorer = WordScorer(model, tokenizer, definition="eow", strategy="passage")
        scorer.logprobs(["The cat sat on the"], [["mat", "sofa"]])      # [[log q(mat), log q(sofa)]]
        scorer.score_prepared([chat_prompt_ids], [["mat"]])             # after a prepared chat prompt
    """

    def __init__(self, model, tokenizer, *, definition: str = "paper", strategy: str = "tree",
                 word_rule: WordRule = DEFAULT_WORD_RULE, boundary: str = "pm", bos: str | None = "auto",
                 batch_size: int | None = None, max_context_tokens: int | None = None):
        _check_args(definition, strategy, True)
        if boundary not in BOUNDARIES:
            raise InputError(f"`boundary`={boundary!r}: expected one of {', '.join(BOUNDARIES)}")
        self.model, self.tokenizer = model, tokenizer
        self.definition, self.strategy, self.word_rule, self.boundary = definition, strategy, word_rule, boundary
        self.bos, self.batch_size, self.max_context_tokens = bos, batch_size, max_context_tokens
        self.eow = definition in ("eow", "pm")
        vocab = _unwrap(model).get_output_embeddings().weight.shape[0] if self.eow else None
        self.word_end, self.word_begin = None, None
        if definition == "pm" and boundary == "pm":
            self.word_end, self.word_begin = pm_boundary(tokenizer, vocab)
        elif definition == "pm":
            self.word_end = word_end_masks(tokenizer, vocab, word_rule)
            self.word_begin = wordrule_begin(tokenizer, vocab, word_rule)
        elif self.eow:
            self.word_end = word_end_masks(tokenizer, vocab, word_rule)

    def encode(self, contexts: Sequence[str], words: Sequence[Sequence[str]], prompt_ids=None):
        """``(context_ids, word_ids)`` of context strings and their words (:func:`encode_batch`)."""
        return encode_batch(self.tokenizer, contexts, words, model=self.model, max_context_tokens=self.max_context_tokens,
                            prompt_ids=prompt_ids, bos=self.bos, eow=self.eow)

    def score_ids(self, context_ids, word_ids, *, text_start=None, progress: bool | None = None) -> list[torch.Tensor]:
        """Log q(w|c) for token ids, in batches of ``batch_size`` contexts (default 16; ``pair``: all at once)."""
        from tqdm.auto import tqdm

        step = self.batch_size or 16
        chunks = range(0, len(context_ids), step) if self.strategy != "pair" else [0]
        text_start = list(text_start) if text_start is not None else [False] * len(context_ids)
        out: list[torch.Tensor] = []
        show = (len(chunks) > 1) if progress is None else progress
        for s in tqdm(chunks, desc="scoring words", disable=not show):
            e = s + step if self.strategy != "pair" else len(context_ids)
            out.extend(score_token_ids(self.model, context_ids[s:e], word_ids[s:e], definition=self.definition,
                                       word_start_mask=self.word_end, strategy=self.strategy,
                                       batch_size=self.batch_size, word_begin=self.word_begin,
                                       text_start=text_start[s:e]))
        return out

    def score(self, contexts: Sequence[str], words: Sequence[Sequence[str]], *, prompt_ids=None,
              progress: bool | None = None) -> list[torch.Tensor]:
        """Natural-log q(w|c) of every word of every context string (differentiable when grad is on)."""
        ctx_ids, w_ids = self.encode(contexts, words, prompt_ids)
        return self.score_ids(ctx_ids, w_ids, text_start=[not c.strip() for c in contexts], progress=progress)

    def score_prepared(self, conditioning: Sequence[Sequence[int]], words: Sequence[Sequence[str]], *,
                       progress: bool | None = None) -> list[torch.Tensor]:
        """Log q(w | conditioning) with prepared conditioning: ``conditioning[i]`` are the token ids the words of
        ``words[i]`` follow (nothing is added), each word tokenised as the start of a text or a response."""
        if len(conditioning) != len(words):
            raise InputError(f"{len(conditioning)} conditionings but {len(words)} word lists")
        w_ids = [[word_token_ids(self.tokenizer, "", w) for w in ws] for ws in words]
        limit = _model_max_positions(self.model)
        for i, (cond, ws) in enumerate(zip(conditioning, w_ids)):
            longest = max((len(t) for t in ws), default=0) + (0 if self.eow else -1)
            if limit is not None and len(cond) + longest > limit:
                raise InputError(f"context {i}: the conditioning ({len(cond)} tokens) and its longest word "
                                 f"({longest} tokens) do not fit the model's {limit} positions")
        return self.score_ids([list(c) for c in conditioning], w_ids, text_start=[False] * len(words),
                              progress=progress)

    def logprobs(self, contexts, words, **kw) -> list[list[float]]:
        """:meth:`score` under ``torch.no_grad`` as plain floats."""
        with torch.no_grad():
            return [t.tolist() for t in self.score(contexts, words, **kw)]


def score_words(model, tokenizer, contexts: list[str], words: list[list[str]], *, definition: str = "paper",
                strategy: str = "tree", max_context_tokens: int | None = None, batch_size: int | None = None,
                prompt_ids=None, bos: str | None = "auto", progress: bool | None = None,
                word_rule: WordRule = DEFAULT_WORD_RULE, boundary: str = "pm") -> list[torch.Tensor]:
    """Natural-log q(w|c) of every word of every context (``WordScorer(...).score(...)``).

    Args:
        model, tokenizer: a causal LM and its tokenizer.
        contexts: context strings (trailing whitespace ignored).
        words: per context, the words to score (any surface form: ``"The"`` and ``"the"`` differ).
        definition: ``"paper"``, ``"eow"`` or ``"pm"`` (:data:`WORD_DEFINITIONS`).
        strategy: ``"pair"``, ``"context"``, ``"tree"`` (default) or ``"passage"``.
        max_context_tokens: keep at most this many context tokens (cut from the left).
        batch_size: contexts per forward (``pair``: pairs per forward); default 16.
        prompt_ids: token ids placed after BOS before every context (one list, or one per context).
        bos: the first token of every context (:mod:`varylm_hf.conditioning`; ``"none"`` after a chat prompt).
        progress: show a progress bar (default: when there is more than one batch).
        word_rule: the word outcome whose end-of-word masks ``eow`` uses (:func:`word_end_masks`).
        boundary: ``pm`` only: ``"pm"`` (wordsprobability's boundary, :func:`pm_boundary`; default) or
            ``"wordrule"`` (``word_rule``'s end masks and :func:`wordrule_begin`).

    Returns:
        One 1-D tensor per context in the order of ``words[i]``; differentiable when grad is on.
    """
    scorer = WordScorer(model, tokenizer, definition=definition, strategy=strategy, word_rule=word_rule,
                        boundary=boundary, bos=bos, batch_size=batch_size, max_context_tokens=max_context_tokens)
    return scorer.score(contexts, words, prompt_ids=prompt_ids, progress=progress)


def word_logprobs(model, tokenizer, contexts, words, **kw) -> list[list[float]]:
    """:func:`score_words` under ``torch.no_grad`` as plain floats (natural log)."""
    with torch.no_grad():
        return [t.tolist() for t in score_words(model, tokenizer, contexts, words, **kw)]


def word_loss(logq: list[torch.Tensor], target_probs: list[torch.Tensor]) -> torch.Tensor:
    """L_Var: mean over contexts of ``-sum_w p(w|c) log q(w|c)``.

    ``logq[i]`` and ``target_probs[i]`` are 1-D tensors over the same words of context i.
    A one-hot target gives the word-level cross-entropy of the FT-orig / FT-maj baselines.

    >>> import torch, math
    >>> round(float(word_loss([torch.log(torch.tensor([0.5, 0.25]))], [torch.tensor([0.5, 0.5])])), 4)
    1.0397
    """
    if len(logq) != len(target_probs) or not logq:
        raise InputError(f"word_loss: {len(logq)} score tensors and {len(target_probs)} targets (need equal, > 0)")
    terms = []
    for i, (lq, p) in enumerate(zip(logq, target_probs)):
        if lq.shape != p.shape:
            raise InputError(f"word_loss: context {i} has {tuple(lq.shape)} scores but {tuple(p.shape)} targets")
        terms.append(-(p.to(lq.dtype) * lq).sum())
    return torch.stack(terms).mean()
