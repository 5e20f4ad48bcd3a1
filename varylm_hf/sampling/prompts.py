"""What every sampling backend conditions the model on: its options checked, the prompts built and encoded.

Prompts (``prompt=``): ``"plain"`` (the first token of :mod:`varylm_hf.conditioning` -- the
tokenizer's own BOS or the document separator, never a chat marker -- and the context: the
same conditioning as the word scorer and the trainer, for pretrained models),
``"instruction"`` (the paper's instruction prompt inside the chat template, for
instruction-tuned models), ``"one_shot"`` (the 1-shot baseline prompt; needs
``one_shot_example``), or ``"auto"`` (``"instruction"`` when the tokenizer has a chat template,
else ``"plain"``).

Seeding: each context gets its own random generator, seeded from ``seed`` and the context
text (:func:`context_seed`), so the samples of a context do not depend on the batch it lands in
nor on ``--limit``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from ..errors import InputError
from ..options import PROMPT_STYLES
from ..prompts import chat_messages, instruction_prompt, one_shot_prompt
from ..scoring import _model_max_positions, context_token_ids


def resolve_prompt_style(tokenizer, prompt: str = "auto") -> str:
    """``"auto"`` -> ``"instruction"`` if the tokenizer has a chat template, else ``"plain"``."""
    if prompt not in PROMPT_STYLES:
        raise InputError(f"--prompt {prompt}: expected one of {', '.join(PROMPT_STYLES)}")
    if prompt == "auto":
        return "instruction" if getattr(tokenizer, "chat_template", None) else "plain"
    return prompt


def build_prompts(tokenizer, contexts: Sequence[str], prompt: str = "auto", one_shot_example=None) -> list[str]:
    """The prompt text for every context (chat-formatted for ``instruction``/``one_shot``).

    Args:
        tokenizer: its chat template formats the instruction prompts.
        contexts: the cloze contexts.
        prompt: one of :data:`PROMPT_STYLES`.
        one_shot_example: ``(context, answers)`` from the *training* split, for ``one_shot``.
    """
    style = resolve_prompt_style(tokenizer, prompt)
    if style == "plain":
        return list(contexts)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--prompt {style}: the tokenizer has no chat template (use --prompt plain)")
    if style == "one_shot":
        if one_shot_example is None:
            raise InputError("--prompt one_shot needs an example context with its answers from the training split")
        ex_context, ex_answers = one_shot_example
        texts = [one_shot_prompt(c, ex_context, ex_answers) for c in contexts]
    else:
        texts = [instruction_prompt(c) for c in contexts]
    return [
        tokenizer.apply_chat_template(chat_messages(t), tokenize=False, add_generation_prompt=True)
        for t in texts
    ]


def context_seed(seed: int, context: str) -> int:
    """The seed of one context's generator: a stable hash of ``seed`` and the context text."""
    return zlib.crc32(f"{int(seed)}\x00{context}".encode("utf-8"))


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool, bos: str | None = "auto") -> list[list[int]]:
    """Token ids the model is conditioned on, the same way the word scorer and trainer encode them.

    Plain contexts: ``[first token] + tokens(context)`` (:func:`varylm_hf.scoring.context_token_ids`
    with ``bos``; an empty context falls back to EOS). Chat prompts are already formatted by the
    template, which holds its own special tokens: they are tokenised as they are.
    """
    if chat:
        return [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts]
    return [context_token_ids(tokenizer, text, bos=bos) for text in prompts]


def _fit_positions(model, encoded: list[list[int]], max_new_tokens: int, keep_first: bool) -> list[list[int]]:
    """Cut prompts from the left so that prompt + ``max_new_tokens`` fits the model's positions.

    ``keep_first`` keeps the first token (a plain context's document separator/BOS), as the word
    scorer does; a chat prompt is cut as it is (a prompt that long is a user error the model reports).
    """
    limit = _model_max_positions(model)
    if limit is None:
        return encoded
    room = limit - max_new_tokens
    if room < 2:
        raise InputError(f"--max-new-tokens {max_new_tokens}: leaves no room for the context in the model's "
                         f"{limit} positions")
    out = []
    for ids in encoded:
        if len(ids) > room:
            ids = ids[:1] + ids[len(ids) - room + 1:] if keep_first else ids[len(ids) - room:]
        out.append(ids)
    return out


def _eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a continuation: the EOS ids and every other special token (pad, unk, chat markers)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else list(value))
    return ids


def _check_sampling_args(num_samples, max_new_tokens, temperature, top_k, top_p, batch_size):
    if num_samples < 1:
        raise InputError(f"--num-samples must be >= 1, got {num_samples}")
    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if temperature <= 0:
        raise InputError(f"--temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise InputError(f"--top-k must be >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1], got {top_p}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")


def _encode_for_sampling(model, tokenizer, contexts, prompt, one_shot_example, max_new_tokens, bos):
    """Prompts of both samplers: ``(style, encoded prompts, eos ids, pad id)``.

    The prompts are cut to leave ``max_new_tokens`` positions (:func:`_fit_positions`); the pad id
    is the tokenizer's, else the smallest EOS id, else 0.
    """
    style = resolve_prompt_style(tokenizer, prompt)
    prompts = build_prompts(tokenizer, contexts, style, one_shot_example)
    encoded = _fit_positions(model, encode_prompts(tokenizer, prompts, chat=style != "plain", bos=bos),
                             max_new_tokens, keep_first=style == "plain")
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    return style, encoded, eos, pad_id
