"""First-word sampling from a causal LM: ancestral samples cut to their first complete word.

For every context the model draws ``num_samples`` continuations (40, as in the paper) with
plain ancestral sampling (``top_k=0, top_p=1.0, temperature=1.0`` unless told otherwise), each
continued until its first word is decided, and each cut to that word by the ONE word rule that the
exact scorer's end-of-word masks derive from (:class:`varylm_hf.data.words.WordRule`: one space then
letters/digits after a plain context, the response's start after a chat prompt; inner hyphens kept,
contractions split as in the Provo answers), normalised like the human answers. A sample that opens
no word (punctuation first, no space, end of sequence first, or no decision within
``max_new_tokens``) is kept as the outcome :data:`~varylm_hf.data.normalize.NO_WORD`.

Speed: the prompts of a batch of contexts are encoded once (left-padded, one forward pass);
the key/value cache is then repeated ``num_samples`` times and the samples are decoded
together, each row leaving the batch as soon as its word is complete. The naive way
(``generate(num_return_sequences=40)`` per context, :func:`naive_sample_next_words`) prefills
every context 40 times; see ``benchmarks/bench_eval.py``.

Seeding: each context gets its own random generator, seeded from ``seed`` and the context
text, so the samples of a context do not depend on the batch it lands in nor on ``--limit``.

Prompts (``prompt=``): ``"plain"`` (the first token of :mod:`varylm_hf.conditioning` -- the
tokenizer's own BOS or the document separator, never a chat marker -- and the context: the
same conditioning as the word scorer and the trainer, for pretrained models),
``"instruction"`` (the paper's instruction prompt inside the chat template, for
instruction-tuned models), ``"one_shot"`` (the 1-shot baseline prompt; needs
``one_shot_example``), or ``"auto"`` (``"instruction"`` when the tokenizer has a chat template,
else ``"plain"``).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

from .data.normalize import NO_WORD, Normalizer
from .data.words import DEFAULT_WORD_RULE, WordRule
from .errors import InputError
from .options import PROMPT_STYLES
from .prompts import chat_messages, instruction_prompt, one_shot_prompt
from .scoring import context_token_ids

__all__ = [
    "PROMPT_STYLES",
    "resolve_prompt_style",
    "build_prompts",
    "context_seed",
    "sample_next_words",
    "naive_sample_next_words",
    "word_from_continuation",
    "encode_prompts",
]



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
    from .scoring import _model_max_positions

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


def _decode_after(tokenizer, anchors: Sequence[int], rows: Sequence[list[int]]) -> list[str]:
    """Decode each row as it reads after its anchor token (keeps SentencePiece's leading space)."""
    full = tokenizer.batch_decode([[a] + r for a, r in zip(anchors, rows)], skip_special_tokens=True)
    heads = tokenizer.batch_decode([[a] for a in anchors], skip_special_tokens=True)
    return [f[len(h):] if f.startswith(h) else f for f, h in zip(full, heads)]


def _eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a continuation: the EOS ids and every other special token (pad, unk, chat markers)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else list(value))
    return ids


def _filter_logits(logits, temperature: float, top_k: int, top_p: float):
    """Temperature, top-k and nucleus filtering of ``logits`` (rows, vocab) -> probabilities."""
    import torch

    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        drop = (cum - sorted_p) > top_p  # keep the smallest prefix with mass >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


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


def sample_next_words(
    model,
    tokenizer,
    contexts: Sequence[str],
    num_samples: int = 40,
    *,
    prompt: str = "auto",
    one_shot_example=None,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 42,
    batch_size: int = 4,
    normalizer: Normalizer | None = None,
    bos: str | None = "auto",
    word_rule: WordRule | None = None,
    return_texts: bool = False,
    progress: bool = False,
):
    """Sample ``num_samples`` first words per context, sharing each context's KV cache.

    Args:
        model: a causal LM (transformers or PEFT), in eval mode.
        tokenizer: its tokenizer (not modified).
        contexts: the cloze contexts (plain text, without a trailing space).
        num_samples: samples per context (paper: 40).
        prompt: ``"auto"``, ``"plain"``, ``"instruction"`` or ``"one_shot"`` (module docstring).
        one_shot_example: ``(context, answers)`` from the training split, for ``"one_shot"``.
        max_new_tokens: token budget to complete the first word; a sample still inside its first
            word when the budget runs out counts as :data:`NO_WORD`.
        temperature, top_k, top_p: sampling controls; the defaults give ancestral sampling.
        seed: base seed; each context's generator is seeded with :func:`context_seed`.
        batch_size: contexts encoded together (the cache holds ``batch_size * num_samples`` rows).
        normalizer: word normaliser (default: the one used for the human answers).
        bos: first token of plain contexts (:mod:`varylm_hf.conditioning`).
        word_rule: where the first word ends (default :data:`~varylm_hf.data.words.DEFAULT_WORD_RULE`).
        return_texts: also return the raw decoded continuations.
        progress: show a tqdm bar (contexts/s).

    Returns:
        ``words``: one list of ``num_samples`` normalised words per context (``NO_WORD`` for a
        failure), or ``(words, texts)`` with ``return_texts=True``.
    """
    import torch

    _check_sampling_args(num_samples, max_new_tokens, temperature, top_k, top_p, batch_size)
    style, encoded, eos, pad_id = _encode_for_sampling(model, tokenizer, contexts, prompt, one_shot_example,
                                                       max_new_tokens, bos)
    spec = _Decoding(
        tokenizer=tokenizer, num_samples=num_samples, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, eos=eos, device=next(model.parameters()).device, pad_id=pad_id,
        rule=word_rule_for(normalizer, word_rule), lead=lead_of(style != "plain"),
    )
    device = spec.device

    words: list[list[str]] = []
    texts: list[list[str]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(contexts), desc="sampling", unit="ctx")
    try:
        for start in range(0, len(contexts), batch_size):
            batch_ids = encoded[start : start + batch_size]
            batch_ctx = contexts[start : start + batch_size]
            gens = [
                torch.Generator(device=device).manual_seed(context_seed(seed, c)) for c in batch_ctx
            ]
            w, t = _sample_batch(model, batch_ids, gens, spec)
            words.extend(w)
            texts.extend(t)
            if bar is not None:
                bar.update(len(batch_ids))
    finally:
        if bar is not None:
            bar.close()
    return (words, texts) if return_texts else words


@dataclasses.dataclass(frozen=True)
class _Decoding:
    """Everything one sampling batch needs besides the model, its prompts and generators."""

    tokenizer: object
    num_samples: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    eos: set
    pad_id: int
    device: object
    rule: WordRule
    lead: str


def _sample_batch(model, batch_ids, gens, spec: _Decoding):
    import torch

    tokenizer, S, max_new_tokens, eos, pad_id, device = (spec.tokenizer, spec.num_samples, spec.max_new_tokens,
                                                         spec.eos, spec.pad_id, spec.device)
    anchors = [ids[-1] for ids in batch_ids]

    B = len(batch_ids)
    L = max(len(x) for x in batch_ids)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for i, ids in enumerate(batch_ids):  # left padding
        input_ids[i, L - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[i, L - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=1)  # (B, 1, V)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        cache.batch_repeat_interleave(S)  # every sample row shares its context's prefix
        logits = out.logits[:, -1, :].repeat_interleave(S, dim=0)  # (B*S, V)
        mask = mask.repeat_interleave(S, dim=0)  # (B*S, L)
        next_pos = position_ids[:, -1].repeat_interleave(S, dim=0) + 1  # (B*S,)

        n_rows = B * S
        generated: list[list[int]] = [[] for _ in range(n_rows)]
        ended = [False] * n_rows  # reached an end-of-sequence token
        done = [False] * n_rows
        active = list(range(n_rows))  # row ids still decoding, in cache order
        for step in range(max_new_tokens):
            probs = _filter_logits(logits, spec.temperature, spec.top_k, spec.top_p)  # (len(active), V)
            tokens = torch.empty(len(active), dtype=torch.long, device=device)
            # draw each context's rows with that context's generator
            pos = 0
            while pos < len(active):
                ctx = active[pos] // S
                end = pos
                while end < len(active) and active[end] // S == ctx:
                    end += 1
                tokens[pos:end] = torch.multinomial(probs[pos:end], 1, generator=gens[ctx]).squeeze(-1)
                pos = end
            tok_list = tokens.tolist()
            to_decode = []
            for row, tok in zip(active, tok_list):
                if tok in eos:
                    ended[row] = done[row] = True
                else:
                    generated[row].append(tok)
                    to_decode.append(row)
            if to_decode:
                decoded = _decode_after(tokenizer, [anchors[r // S] for r in to_decode], [generated[r] for r in to_decode])
                for row, text in zip(to_decode, decoded):
                    if spec.rule.cut(text, ended=False, lead=spec.lead) is not None:
                        done[row] = True  # the first word (or the failure) is decided
            keep = [k for k, row in enumerate(active) if not done[row]]
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(active):
                keep_t = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(keep_t)
                tokens, mask, next_pos = tokens[keep_t], mask[keep_t], next_pos[keep_t]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                        cache=cache, use_cache=True)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1

    texts_flat = _decode_after(tokenizer, [anchors[r // S] for r in range(n_rows)], generated)
    words_flat = [word_from_continuation(t, e, rule=spec.rule, chat=spec.lead == "") for t, e in zip(texts_flat, ended)]
    words = [words_flat[i * S : (i + 1) * S] for i in range(B)]
    texts = [texts_flat[i * S : (i + 1) * S] for i in range(B)]
    return words, texts


def _options_of(fn, options: dict) -> dict:
    """``options`` completed with ``fn``'s keyword defaults; an unknown name is a one-line error."""
    import inspect

    params = {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise InputError(f"unknown sampling option(s) {', '.join(unknown)} (expected some of {', '.join(params)})")
    return {**params, **options}


def naive_sample_next_words(model, tokenizer, contexts: Sequence[str], num_samples: int = 40, **options
                            ) -> list[list[str]]:
    """Reference sampler: ``model.generate(num_return_sequences=num_samples)`` once per context.

    Takes the keyword options of :func:`sample_next_words` (same defaults; ``batch_size``, ``progress`` and
    ``return_texts`` are accepted for the backend interface, :data:`SAMPLERS`, and unused: one context at a
    time, words only). Same outputs in distribution as :func:`sample_next_words` (same prompts, same word
    cutting), but every context is prefilled ``num_samples`` times and all ``max_new_tokens`` are generated.
    Kept for the benchmark and as a cross-check; use :func:`sample_next_words`.
    """
    import torch

    o = _options_of(sample_next_words, options)
    if o["return_texts"]:
        raise InputError("the naive sampler returns words only (return_texts is for sample_next_words)")
    max_new_tokens, top_k, top_p, temperature = o["max_new_tokens"], o["top_k"], o["top_p"], o["temperature"]
    _check_sampling_args(num_samples, max_new_tokens, temperature, top_k, top_p, 1)
    style, encoded, eos, pad_id = _encode_for_sampling(model, tokenizer, contexts, o["prompt"], o["one_shot_example"],
                                                       max_new_tokens, o["bos"])
    device = next(model.parameters()).device
    rule, chat = word_rule_for(o["normalizer"], o["word_rule"]), style != "plain"
    results = []
    for ctx, ids in zip(contexts, encoded):
        torch.manual_seed(context_seed(o["seed"], ctx))
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                top_k=top_k, top_p=top_p, temperature=temperature, max_new_tokens=max_new_tokens,
                num_return_sequences=num_samples, pad_token_id=pad_id,
            )
        new = out[:, input_ids.shape[1] :].tolist()
        row_words = []
        for seq in new:
            cut = next((k for k, t in enumerate(seq) if t in eos), None)
            ended = cut is not None
            text = _decode_after(tokenizer, [ids[-1]], [seq[:cut] if ended else seq])[0]
            row_words.append(word_from_continuation(text, ended, rule=rule, chat=chat))
        results.append(row_words)
    return results


# --------------------------------------------------------------------------- backends

#: Sampling backends by name: ``"module:function"`` (imported when first used) or a function with the
#: interface of :func:`sample_next_words` (``model, tokenizer, contexts, num_samples`` and the keywords
#: ``prompt, one_shot_example, max_new_tokens, temperature, top_k, top_p, seed, batch_size, bos, word_rule,
#: progress``; returns one list of ``num_samples`` normalised first words per context). A new backend (vLLM,
#: an API...) is one file with that function plus one entry here, or a :func:`register_sampler` call.
SAMPLERS: dict = {
    "shared-prefix": "varylm_hf.sampling:sample_next_words",
    "naive": "varylm_hf.sampling:naive_sample_next_words",
}


def register_sampler(name: str, backend) -> None:
    """Add (or replace) a sampling backend: a function or a ``"module:function"`` path (see :data:`SAMPLERS`)."""
    SAMPLERS[name] = backend


def get_sampler(name: str):
    """The sampling function registered as ``name`` (one-line :class:`InputError` for an unknown name).

    >>> get_sampler("shared-prefix") is sample_next_words
    True
    """
    backend = SAMPLERS.get(name)
    if backend is None:
        raise InputError(f"--sampler {name}: expected one of {', '.join(SAMPLERS)}")
    if isinstance(backend, str):
        import importlib

        module, _, attr = backend.partition(":")
        backend = getattr(importlib.import_module(module), attr)
    return backend
