"""What a plain context is conditioned on: its first token (the same in training, sampling and scoring).

A pretrained LM saw documents separated by one special token; a plain cloze context should start
the way a document did in pretraining, never with a chat-role marker. The rule of ``bos="auto"``:

1. the tokenizer's own BOS when the tokenizer adds one itself (Llama-2, Mistral: ``<s>``);
2. else the pretraining document separator when the vocabulary has one (``<|endoftext|>``: GPT-2,
   SmolLM2, Qwen; ``<|end_of_text|>``, ``</s>``, ``<eos>``);
3. else the BOS, then the EOS token, if it is not a chat-role marker (a token the chat template
   writes itself, such as SmolLM2's BOS ``<|im_start|>``);
4. else nothing.

``bos="none"`` conditions on the context alone; any other value names the token to use.

Measured (issue #11, SmolLM2-135M-Instruct, 40 short Provo test contexts, exact TVD): 0.705 with
``<|im_start|>`` (the old rule: the tokenizer's ``bos_token``), 0.679 with ``<|endoftext|>``, 0.713
with nothing.
"""

from __future__ import annotations

import weakref

from .errors import InputError

__all__ = ["BOS_CHOICES", "DOCUMENT_SEPARATORS", "first_token_id", "first_token_text"]

#: The ``--bos`` choices besides a literal token.
BOS_CHOICES = {
    "auto": "the tokenizer's own BOS if it adds one, else the pretraining document separator (never a chat marker)",
    "none": "no first token: the context alone",
}
#: Document separators looked up by ``bos="auto"``, in this order.
DOCUMENT_SEPARATORS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _token_id(tokenizer, text: str) -> int | None:
    """The id of the single token spelled ``text`` in the vocabulary, or ``None``."""
    try:
        tid = tokenizer.convert_tokens_to_ids(text)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(tid, int) or tid < 0:
        return None
    return tid if tokenizer.convert_ids_to_tokens(tid) == text else None


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def _is_chat_marker(tokenizer, token: str | None) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    if not token or not isinstance(template, str):
        return False
    return token in template


def _auto(tokenizer) -> int | None:
    if _adds_bos(tokenizer):
        return tokenizer.bos_token_id
    for name in DOCUMENT_SEPARATORS:
        tid = _token_id(tokenizer, name)
        if tid is not None:
            return tid
    for token, tid in ((tokenizer.bos_token, tokenizer.bos_token_id), (tokenizer.eos_token, tokenizer.eos_token_id)):
        if tid is not None and not _is_chat_marker(tokenizer, token):
            return tid
    return None


def first_token_id(tokenizer, bos: str | None = "auto") -> int | None:
    """The id every plain context starts with, or ``None`` for none (module docstring).

    Args:
        tokenizer: the model's tokenizer.
        bos: ``"auto"`` (default), ``"none"`` (or ``None``), or a token of the vocabulary.

    Raises:
        InputError: ``bos`` names a token that is not in the vocabulary.
    """
    if bos is None or bos == "none":
        return None
    try:
        cache = _CACHE.setdefault(tokenizer, {})
    except TypeError:  # an unhashable tokenizer: no memo
        cache = {}
    if bos in cache:
        return cache[bos]
    if bos == "auto":
        tid = _auto(tokenizer)
    else:
        tid = _token_id(tokenizer, bos)
        if tid is None:
            raise InputError(f"--bos {bos!r}: not a token of this tokenizer (use auto, none or a special token)")
    cache[bos] = tid
    return tid


def first_token_text(tokenizer, bos: str | None = "auto") -> str:
    """The first token as text, for summaries and cards (``"(none)"`` when there is none)."""
    tid = first_token_id(tokenizer, bos)
    return "(none)" if tid is None else str(tokenizer.convert_ids_to_tokens(tid))
