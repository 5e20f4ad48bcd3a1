"""Prompts of the paper (Appendix A), one source for training and evaluation alike.

The instruction-tuned recipe trains and evaluates with the *same* prompt (the public
reference code did not). Prompts are plain strings; :func:`chat_messages` wraps one for a
chat template.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from .errors import InputError

__all__ = ["INSTRUCTION", "PAPER_ONE_SHOT_CONTEXT", "instruction_prompt", "one_shot_prompt", "one_shot_example",
           "chat_messages", "format_answers"]

INSTRUCTION = "Instruction: Return one plausible next word for the following context."


def instruction_prompt(context: str) -> str:
    """The paper's base prompt for ``context`` (Appendix A).

    >>> print(instruction_prompt("The cat sat on the"))
    Instruction: Return one plausible next word for the following context.
    Context: The cat sat on the
    Continuation:
    """
    return f"{INSTRUCTION}\nContext: {context}\nContinuation:"


def format_answers(answers: Iterable[Mapping] | Iterable[str]) -> str:
    """Human answers as the comma-separated list shown in the 1-shot example.

    Accepts ``[{"word": w, "count": n}, ...]`` (each word listed once per count, most
    frequent first) or a plain list of words.
    """
    words: list[str] = []
    for a in answers:
        if isinstance(a, Mapping):
            words.extend([a["word"]] * int(a["count"]))
        else:
            words.append(str(a))
    return ", ".join(words)


#: The training context of the paper's 1-shot example (Appendix A; Provo passage 1).
PAPER_ONE_SHOT_CONTEXT = "There are now rumblings that"


def one_shot_prompt(context: str, example_context: str, example_answers) -> str:
    """The 1-shot baseline prompt of Appendix A: one training context with its human answers, then the request.

    The wording is the paper's, typo included ("continuations. given by"); ``N`` is the number
    of answers listed. ``example_context``/``example_answers`` must come from the *training* split
    (:func:`one_shot_example`).

    >>> print(one_shot_prompt("The cat sat on the", "There are now rumblings that", ["are", "are", "can"]))
    Instruction: This is an example of a context and some plausible next word continuations. given by a group of 3 people: Context: There are now rumblings that, Continuations: [are, are, can]. Following this example, return only one plausible next word for the following context.
    Context: The cat sat on the
    Continuation:
    """
    listed = format_answers(example_answers)
    n = len(listed.split(", ")) if listed else 0
    return (
        "Instruction: This is an example of a context and some plausible next word continuations. "
        f"given by a group of {n} people: Context: {example_context}, Continuations: [{listed}]. "
        "Following this example, return only one plausible next word for the following context.\n"
        f"Context: {context}\nContinuation:"
    )


def one_shot_example(train_records: Sequence[Mapping], seed: int | None = None, min_context_words: int = 5):
    """The 1-shot example ``(context, answers)`` from the *training* records.

    ``seed=None`` (default): the paper's fixed example, the training context "There are now
    rumblings that" with its human answers. An integer ``seed`` draws a training context at random
    instead (contexts of at least ``min_context_words`` words preferred). Pass only the training
    split: the example must never come from the contexts being evaluated.
    """
    if not train_records:
        raise InputError("one_shot_example: the training split is empty")
    if seed is None:
        for rec in train_records:
            if rec["context"].strip() == PAPER_ONE_SHOT_CONTEXT:
                return rec["context"], list(rec["answers"])
        raise InputError(f"the paper's 1-shot example context {PAPER_ONE_SHOT_CONTEXT!r} is not in the training "
                         "split of this dataset: pass --one-shot-seed N to draw a training context instead")
    pool = [r for r in train_records if len(r["context"].split()) >= min_context_words] or list(train_records)
    pool = sorted(pool, key=lambda r: str(r["id"]))
    rec = random.Random(seed).choice(pool)
    return rec["context"], list(rec["answers"])


def chat_messages(prompt: str, completion: str | None = None) -> list[dict]:
    """Wrap a prompt (and optionally its completion) as chat messages for a chat template."""
    messages = [{"role": "user", "content": prompt}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages
