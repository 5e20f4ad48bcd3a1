"""The data of the instruction-tuned recipes: augmented SFT rows, ``var`` units and the batch unit (rows).

For every context and every human answer the augmented dataset holds one (prompt, completion) pair
(:func:`sft_rows`, TRL's conversational prompt/completion format): a context with 40 answers appears 40
times. The ``var`` recipe keeps one unit per context instead (:func:`var_units`): the chat prompt's tokens once
and each distinct answer's completion tokens, exactly those TRL trains on (:func:`chat_token_ids`), with its
count. Both recipes count their batches in augmented rows (:data:`BATCH_UNIT`, :func:`batch_rows`); ``var``
takes whole contexts (:func:`contexts_per_batch`). No torch at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..data.labels import LABEL_MODES as _ALL_LABEL_MODES
from ..data.labels import label_counts
from ..errors import InputError
from ..prompts import chat_messages, instruction_prompt

__all__ = [
    "LABEL_MODES",
    "BATCH_UNIT",
    "DEFAULT_BATCH_ROWS",
    "sft_rows",
    "build_sft_dataset",
    "chat_token_ids",
    "var_units",
    "build_var_dataset",
    "batch_rows",
    "contexts_per_batch",
]

#: Which human data becomes completions (count times each): the label views of
#: :data:`varylm_hf.data.LABEL_MODES` that need no ``k`` (every answer, the majority answer, the corpus word...).
LABEL_MODES = tuple(name for name, view in _ALL_LABEL_MODES.items() if not view.needs_k)
#: The batch unit of both recipes: augmented (prompt, answer) rows per optimizer step; the paper's batch is 32.
BATCH_UNIT = "rows"
DEFAULT_BATCH_ROWS = 32


def sft_rows(records: Iterable[Mapping], label_mode: str = "all") -> list[dict]:
    """Augmented SFT rows in TRL's conversational prompt/completion format.

    One row per human answer (a context with answer counts {are: 16, is: 9} yields 25 rows)
    for ``label_mode="all"``, one row per context otherwise. Each row is
    ``{"prompt": [{"role": "user", "content": instruction_prompt(context)}],
    "completion": [{"role": "assistant", "content": word}], "id": record id}``.
    """
    rows = []
    for rec in records:
        prompt = chat_messages(instruction_prompt(rec["context"]))
        for word, count in label_counts(rec, label_mode):
            row = {"prompt": prompt, "completion": [{"role": "assistant", "content": word}], "id": rec["id"]}
            rows.extend(dict(row) for _ in range(count))
    return rows


def build_sft_dataset(records: Iterable[Mapping], label_mode: str = "all"):
    """:func:`sft_rows` as a :class:`datasets.Dataset` (columns prompt, completion, id)."""
    from datasets import Dataset  # heavy: datasets; reproduce (so the CLI) imports this module

    rows = sft_rows(records, label_mode)
    if not rows:
        raise InputError("no records to build the SFT dataset from")
    return Dataset.from_list(rows)


def chat_token_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` exactly as TRL's SFTTrainer tokenises a conversational row.

    The chat template is applied to the prompt alone (with the generation prompt) and to
    prompt + completion; the completion starts where the two diverge (TRL's
    ``common_prefix_length``). ``completion_ids`` holds the word and whatever the template puts
    after it (end-of-turn token, newline): every token TRL puts in the loss.
    """
    messages = chat_messages(prompt)
    p_ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)[
        "input_ids"
    ]
    full = tokenizer.apply_chat_template(
        chat_messages(prompt, completion), tokenize=True, return_dict=True
    )["input_ids"]
    n = 0
    for a, b in zip(p_ids, full):
        if a != b:
            break
        n += 1
    if n == len(full):
        raise InputError(f"completion {completion!r}: the chat template adds no tokens for it")
    return list(full[:n]), list(full[n:])


def var_units(records: Iterable[Mapping], tokenizer, label_mode: str = "all", max_length: int | None = 1024) -> list[dict]:
    """One scoring unit per context for ``recipe="var"``: the chat prompt once, each distinct answer once.

    Each unit is ``{"id", "passage_id", "context_ids": [int], "word_ids": [[int]], "counts": [int]}``
    where ``word_ids`` are the completion tokens TRL would train on and ``counts`` the number of
    augmented rows of that answer. A context whose answers render different prompt prefixes
    (unusual templates) becomes several units, so the tokens stay identical to TRL's.
    Rows longer than ``max_length`` raise (TRL would truncate them).
    """
    units = []
    for rec in records:
        prompt = instruction_prompt(rec["context"])
        groups: dict[tuple[int, ...], dict] = {}
        for word, count in label_counts(rec, label_mode):
            ctx, comp = chat_token_ids(tokenizer, prompt, word)
            if max_length is not None and len(ctx) + len(comp) > max_length:
                raise InputError(f"record {rec['id']}: prompt + {word!r} is longer than max_length={max_length}")
            unit = groups.setdefault(tuple(ctx), {"id": rec["id"], "passage_id": rec.get("passage_id"),
                                                  "context_ids": ctx, "word_ids": [], "counts": []})
            unit["word_ids"].append(comp)
            unit["counts"].append(int(count))
        units.extend(groups.values())
    return units


def build_var_dataset(records: Iterable[Mapping], tokenizer, label_mode: str = "all"):
    """:func:`var_units` as a :class:`datasets.Dataset`."""
    from datasets import Dataset  # heavy: datasets; reproduce (so the CLI) imports this module

    units = var_units(records, tokenizer, label_mode)
    if not units:
        raise InputError("no records to build the var dataset from")
    return Dataset.from_list(units)


def _on_cuda() -> bool:
    import torch  # heavy: torch; reproduce (so the CLI) imports this module

    return torch.cuda.is_available()



def batch_rows(recipe: str, batch_size: int | None, per_device_batch_size: int | None,
               cuda: bool | None = None) -> tuple[int, int]:
    """``(rows per optimizer step, rows per device micro-batch)`` of either recipe, in augmented rows.

    One unit for both recipes (:data:`BATCH_UNIT`): ``batch_size`` rows per step (default 32, the
    paper's); the micro-batch defaults to 8 rows on CUDA and 4 on CPU for ``sft`` and to the whole
    step for ``var`` (whose rows of one context cost one prompt); the rest is gradient accumulation.

    >>> batch_rows("sft", None, None, cuda=False), batch_rows("var", 64, 32)
    ((32, 4), (64, 32))
    """
    total = batch_size or DEFAULT_BATCH_ROWS
    if per_device_batch_size:
        per_device = per_device_batch_size
    elif recipe == "sft":
        per_device = min(total, 8 if (_on_cuda() if cuda is None else cuda) else 4)
    else:
        per_device = total
    if total % per_device:
        raise InputError(f"--batch_size {total} must be a multiple of --per_device_batch_size {per_device}")
    return total, per_device


def contexts_per_batch(rows: int, row_counts: Sequence[int]) -> int:
    """Whole contexts per ``var`` micro-batch that hold ``rows`` augmented rows on average.

    ``row_counts`` are the augmented rows of each context (its answer count); the result is
    ``round(rows / mean row count)``, at least 1. A context's answers are never split across
    batches: with Provo's ~40 answers per context the paper's 32 rows are one context per step,
    and with one answer per context (majority, corpus) 32 contexts.

    >>> contexts_per_batch(32, [40, 38, 42]), contexts_per_batch(32, [1, 1]), contexts_per_batch(256, [40] * 9)
    (1, 32, 6)
    """
    if not row_counts:
        raise InputError("no contexts to batch")
    mean = sum(row_counts) / len(row_counts)
    return max(1, round(rows / mean))
