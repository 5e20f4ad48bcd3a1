"""Per-word surprisal of running text in one forward pass per text (Pimentel & Meister 2024).

For a text ``w_1 .. w_n`` split into words at every token spelled with the space marker (``Ġ``
for byte-level BPE, ``▁`` for SentencePiece) -- the boundary of wordsprobability 0.17, so
punctuation stays with the word before it (``"poised,"``) -- the surprisal of word ``w_i`` in bits is

    uncorrected  -log2 p(t_1..t_m | c)                                    (eq. 3, wordsprobability's "buggy")
    corrected    -log2 p(t_1..t_m | c) - log2 E(c, w_i) + log2 S(c)       (Pimentel & Meister)

where ``E`` is the probability that the token after the word begins a new word or is EOS, and ``S``
the same probability after the context (for the first word of a text, whose first token carries
no space: the probability that the first token is NOT space-marked -- wordsprobability's
"beginning-of-sentence correction"). Both terms come from the forward pass over the text itself:
``E`` of word ``i`` is read at the row where word ``i + 1`` starts (its ``S``), and the last word's
``E`` at the row after the text's last token -- no branch tokens, no second pass. The masks are
:func:`varylm_hf.scoring.pm_boundary` (wordsprobability's, including its weights);
``boundary="wordrule"`` uses the sampler's word rule for ``E`` and ``S`` instead (the words are
still split at spaces).

Each text is conditioned on the same first token as everywhere in varylm
(:mod:`varylm_hf.conditioning`, ``bos="auto"``: the document separator ``<|endoftext|>`` for GPT-2,
Pythia, SmolLM2...). wordsprobability uses ``tokenizer.bos_token_id``: the same token for GPT-2 and
Pythia; pass ``bos=tokenizer.bos_token`` to match it on other models. A text longer than the model's
context is scored with a sliding window (``window`` tokens, each new window keeping
``window - stride`` tokens of the previous one as context).

>>> # rows = text_surprisals(model, tok, ["The cat sat on the mat."])
>>> # rows[0] == {"text_id": 0, "word_index": 0, "word": "The", "surprisal_bits": ..., "surprisal_paper_bits": ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .conditioning import first_token_id
from .data.words import DEFAULT_WORD_RULE, WordRule
from .errors import InputError
from .scoring import (
    BOUNDARIES,
    WordBegin,
    WordEnd,
    _forward_params,
    _model_dtype_device,
    _model_max_positions,
    _unwrap,
    pm_boundary,
    word_end_masks,
    wordrule_begin,
)

__all__ = ["TEXT_COLUMNS", "text_surprisals", "read_texts", "boundary_terms"]

#: Columns of :func:`text_surprisals` rows (and of ``varylm score --text``).
TEXT_COLUMNS = ("text_id", "word_index", "word", "surprisal_bits", "surprisal_paper_bits", "num_tokens")
_LN2 = math.log(2.0)


def read_texts(path) -> list[str]:
    """One text per line of a UTF-8 file (lines are stripped; blank lines keep their number but hold no words)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise InputError(f"--text {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"--text {path}: is a folder, not a text file") from None
    if lines and lines[-1] == "":
        lines = lines[:-1]
    texts = [line.strip() for line in lines]
    if not any(texts):
        raise InputError(f"--text {path}: no text (expected one passage per line)")
    return texts


def boundary_terms(tokenizer, vocab_size: int, boundary: str = "pm",
                   rule: WordRule = DEFAULT_WORD_RULE) -> tuple[WordEnd, WordBegin]:
    """The ``E`` and ``S`` masks of ``boundary`` (``"pm"``: wordsprobability's; ``"wordrule"``: the sampler's)."""
    if boundary not in BOUNDARIES:
        raise InputError(f"`boundary`={boundary!r}: expected one of {', '.join(BOUNDARIES)}")
    if boundary == "pm":
        return pm_boundary(tokenizer, vocab_size)
    begin = wordrule_begin(tokenizer, vocab_size, rule)
    pm_end, pm_begin = pm_boundary(tokenizer, vocab_size)  # split words at spaces in both cases
    return word_end_masks(tokenizer, vocab_size, rule), WordBegin(begin.weights, pm_begin.is_bow)


def _encode(tokenizer, text: str):
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]), None


def _forward_logits(model, seq: list[int], window: int, stride: int, params) -> torch.Tensor:
    """Logits (len(seq), V) of every position, in windows of ``window`` tokens when the text is longer."""
    _, device = _model_dtype_device(model)
    L = len(seq)
    chunks, done, start = [], 0, 0
    while done < L:
        end = min(start + window, L)
        ids = torch.tensor([seq[start:end]], device=device)
        kw = {"use_cache": False} if "use_cache" in params else {}
        logits = model(input_ids=ids, **kw).logits[0]
        chunks.append(logits[done - start:].float())
        done = end
        start = max(0, end - (window - stride))
    return torch.cat(chunks, 0)


def text_surprisals(model, tokenizer, texts: Sequence[str], *, bos: str | None = "auto", boundary: str = "pm",
                    word_rule: WordRule = DEFAULT_WORD_RULE, window: int | None = None, stride: int | None = None,
                    progress: bool | None = None) -> list[dict]:
    """One row per word of every text: ``TEXT_COLUMNS`` (surprisals in bits; module docstring).

    Args:
        model, tokenizer: a causal LM and its (fast) tokenizer.
        texts: the texts (each stripped; an empty one yields no rows but keeps its ``text_id``).
        bos: the first token of each text (:func:`varylm_hf.conditioning.first_token_id`); one is required.
        boundary: ``"pm"`` (wordsprobability's word boundary; default) or ``"wordrule"``.
        window: tokens per forward (default: the model's position limit); ``stride``: new tokens per
            further window (default ``window // 2``).
        progress: show a progress bar (default: more than one text).
    """
    first = first_token_id(tokenizer, bos)
    if first is None:
        raise InputError("running text needs a first token to condition the first word on (--bos auto or a token)")
    inner = _unwrap(model)
    vocab = inner.get_output_embeddings().weight.shape[0]
    end, begin = boundary_terms(tokenizer, vocab, boundary, word_rule)
    limit = _model_max_positions(model)
    window = min(window or limit or 1024, limit or 1 << 30)
    if window < 2:
        raise InputError(f"--window {window}: must be at least 2 tokens")
    stride = stride or max(1, window // 2)
    if not 1 <= stride <= window - 1:
        stride = max(1, min(stride, window - 1))
    params = _forward_params(model)
    rows: list[dict] = []
    show = (len(texts) > 1) if progress is None else progress
    with torch.no_grad():
        for text_id, raw in enumerate(tqdm(texts, desc="scoring texts", unit="text", disable=not show)):
            text = raw.strip()
            if not text:
                continue
            ids, offsets = _encode(tokenizer, text)
            if not ids:
                continue
            n = len(ids)
            logits = _forward_logits(model, [first] + ids, window, stride, params)  # row k predicts ids[k]
            lse = torch.logsumexp(logits, -1)
            idx = torch.tensor(ids, device=logits.device)
            tok_lp = (logits[torch.arange(n, device=logits.device), idx] - lse[:n]).double()
            starts = [0] + [k for k in range(1, n) if bool(begin.is_bow[ids[k]])]
            bounds = starts + [n]
            # S at every word start, E at the row after each word's last token (= the next word's start)
            rows_b = torch.tensor(starts, device=logits.device)
            logp_b = logits[rows_b] - lse[rows_b, None]
            s_term = begin.term(logp_b, begin.classes([ids[k] for k in starts], [k == 0 for k in starts])).double()
            rows_e = torch.tensor(bounds[1:], device=logits.device)
            logp_e = logits[rows_e] - lse[rows_e, None]
            e_term = end.term(logp_e, [ids[b - 1] for b in bounds[1:]]).double()
            csum = torch.cat([torch.zeros(1, dtype=torch.float64, device=logits.device), tok_lp.cumsum(0)])
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                paper = float(csum[b] - csum[a])
                corrected = paper + float(e_term[i]) - float(s_term[i])
                if offsets is not None:
                    word = text[offsets[a][0]: offsets[b - 1][1]].strip()
                else:
                    word = tokenizer.decode(ids[a:b]).strip()
                rows.append({"text_id": text_id, "word_index": i, "word": word,
                             "surprisal_bits": -corrected / _LN2, "surprisal_paper_bits": -paper / _LN2,
                             "num_tokens": b - a})
    return rows
