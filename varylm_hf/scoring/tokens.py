"""Token ids of contexts and words: a word as it reads after its context, a context after its first token and
prompt, both cut to fit the model (:func:`encode_batch`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from ..conditioning import first_token_id
from ..errors import InputError
from .model import _model_max_positions

# A word starting with one of these is joined to its context without a space.
_NO_SPACE_BEFORE = set(".,;:!?)]}%'\u2019")


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
    return words_token_ids(tokenizer, context, [word])[0]


def words_token_ids(tokenizer, context: str, words: Sequence[str]) -> list[list[int]]:
    """:func:`word_token_ids` of several words after one context: the context is tokenised once and the joined
    texts in one batched tokenizer call (the same ids as one call per word)."""
    words = [_check_word(w) for w in words]
    if not words:
        return []
    joined = [_joined(context, w) for w in words]
    context = joined[0][0]
    ids_c = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    texts = [text for _, text in joined]
    out = []
    for word, text, ids_cw in zip(words, texts, tokenizer(texts, add_special_tokens=False)["input_ids"]):
        if len(ids_cw) > len(ids_c) and ids_cw[: len(ids_c)] == ids_c:
            out.append(list(ids_cw[len(ids_c):]))
            continue
        warnings.warn(
            f"tokenizer merges the word {word!r} with the end of its context {context[-20:]!r}; "
            "scoring the word tokenised on its own",
            stacklevel=3,
        )
        sep = text[len(context): len(text) - len(word)]
        out.append(list(tokenizer(sep + word, add_special_tokens=False)["input_ids"]))
    return out


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
        toks = words_token_ids(tokenizer, context, ws)
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
