"""Prompts of the paper (Appendix A), one source for training and evaluation alike.

The instruction-tuned recipe trains and evaluates with the *same* prompt (the public
reference code did not). Prompts are plain strings; :func:`chat_messages` wraps one for a
chat template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["INSTRUCTION", "instruction_prompt", "one_shot_prompt", "chat_messages", "format_answers"]

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


def one_shot_prompt(context: str, example_context: str, example_answers) -> str:
    """The 1-shot baseline prompt: one training context with its human answers, then the request.

    ``example_context``/``example_answers`` must come from the *training* split
    (see :func:`varylm_hf.sft.one_shot_example`).
    """
    return (
        f"{INSTRUCTION}\n"
        f"Example context: {example_context}\n"
        f"Example continuations given by people: {format_answers(example_answers)}\n"
        f"Context: {context}\nContinuation:"
    )


def chat_messages(prompt: str, completion: str | None = None) -> list[dict]:
    """Wrap a prompt (and optionally its completion) as chat messages for a chat template."""
    messages = [{"role": "user", "content": prompt}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages
