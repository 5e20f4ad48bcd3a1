"""The public scoring API on strings: :class:`WordScorer` (model, tokenizer and options fixed once),
:func:`score_words`, :func:`word_logprobs`, and the training loss :func:`word_loss`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..data.words import DEFAULT_WORD_RULE, WordRule
from ..errors import InputError
from ..options import BOUNDARIES
from .boundaries import pm_boundary, word_end_masks, wordrule_begin
from .engine import _check_args, score_token_ids
from .model import _model_max_positions, _unwrap
from .tokens import encode_batch, words_token_ids


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
        w_ids = [words_token_ids(self.tokenizer, "", ws) for ws in words]
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
