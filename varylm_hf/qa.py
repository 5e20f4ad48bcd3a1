"""QA check (paper Appendix G): does learning to vary cost accuracy where one answer is right?

55 general-knowledge items written for this project (``data/qa_items.jsonl``; not taken from
WebQuestions or any other dataset), each in two forms:

* a next-word context (``"The capital city of France is"`` -> ``paris``), asked like the cloze
  contexts (the paper's instruction prompt through the chat template, or the plain context);
* a question (``"What is the capital city of France?"``), asked with the paper's QA prompt
  (:func:`qa_prompt`, chat models only).

Hit rate = fraction of ``n_samples`` first-word samples equal to the target (or to one of the
item's accepted variants, e.g. ``"6"`` for ``six``), averaged over items. Samples are drawn by
:func:`varylm_hf.sampling.sample_next_words` (ancestral, first word, same normaliser as the
cloze data); a sample that yields no word is a miss.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .data.normalize import normalize_word
from .errors import InputError
from .metrics import hit_rate
from .prompts import chat_messages

__all__ = ["QA_INSTRUCTION", "QA_FORMS", "qa_prompt", "load_qa_items", "qa_hit_rate"]

#: The paper's instruction for the question form (Appendix G).
QA_INSTRUCTION = "Instruction: Answer the following question with one word only"
#: ``context``: next-word form; ``question``: question form with :func:`qa_prompt`.
QA_FORMS = ("context", "question")
_KEYS = ("id", "context", "target", "question")


def qa_prompt(question: str) -> str:
    """The paper's QA prompt for the question form.

    >>> print(qa_prompt("What is the capital city of France?"))
    Instruction: Answer the following question with one word only
    Context: What is the capital city of France?
    Continuation:
    """
    return f"{QA_INSTRUCTION}\nContext: {question}\nContinuation:"


def load_qa_items(path: str | Path | None = None) -> list[dict]:
    """Load QA items from a JSONL file (default: the 55 packaged items).

    Each line: ``{"id", "context", "target", "question"}`` plus optional ``"accept"`` (other
    spellings that count as hits) and ``"topic"``. Targets must be single normalised words.

    Raises:
        InputError: naming the file and line of a malformed item.
    """
    if path is None:
        text = resources.files("varylm_hf").joinpath("data/qa_items.jsonl").read_text(encoding="utf-8")
        name = "varylm_hf/data/qa_items.jsonl"
    else:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such QA items file")
        text = Path(path).read_text(encoding="utf-8")
        name = str(path)
    items, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{name}:{n}: not valid JSON ({err.msg})") from None
        missing = [k for k in _KEYS if not isinstance(item.get(k), str) or not item[k].strip()]
        if missing:
            raise InputError(f"{name}:{n}: missing or empty {', '.join(missing)} (expected keys {', '.join(_KEYS)})")
        accepted = [item["target"], *item.get("accept", [])]
        if any(len(w.split()) != 1 or normalize_word(w) != w for w in accepted):
            raise InputError(f"{name}:{n}: target/accept must be single normalised words, got {accepted}")
        if item["id"] in seen:
            raise InputError(f"{name}:{n}: duplicate id {item['id']}")
        seen.add(item["id"])
        items.append({**item, "accept": list(item.get("accept", []))})
    if not items:
        raise InputError(f"{name}: no QA items")
    return items


def qa_hit_rate(
    model,
    tokenizer,
    items: list[dict] | None = None,
    n_samples: int = 40,
    seed: int = 42,
    chat: bool = True,
    *,
    form: str = "context",
    batch_size: int = 4,
    max_new_tokens: int = 16,
    progress: bool = False,
) -> dict:
    """Hit rate of a model on the QA items (paper Table 3).

    Args:
        model, tokenizer: the model to test (base, or with its adapter loaded).
        items: from :func:`load_qa_items` (default: the packaged items).
        n_samples: samples per item (paper: 40).
        seed: sampling seed (per-item generators, as in :func:`~varylm_hf.sampling.sample_next_words`).
        chat: ``True`` for instruction-tuned models (chat template with the paper's prompt),
            ``False`` for pretrained models (the plain context).
        form: ``"context"`` (next-word form) or ``"question"`` (QA prompt; needs ``chat``).

    Returns:
        ``{"hit_rate": mean over items, "per_item": [{"id", "target", "hit_rate", "samples"}],
        "n_samples", "form", "chat", "seed"}``.
    """
    from .sampling import sample_next_words  # heavy: torch; the CLI parser imports this module

    if form not in QA_FORMS:
        raise InputError(f"--qa-form {form}: expected one of {', '.join(QA_FORMS)}")
    items = load_qa_items() if items is None else items
    kw = dict(seed=seed, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
    if form == "context":
        style = "instruction" if chat else "plain"
        samples = sample_next_words(model, tokenizer, [it["context"] for it in items], n_samples, prompt=style, **kw)
    else:
        if not chat or not getattr(tokenizer, "chat_template", None):
            raise InputError("--qa-form question needs an instruction-tuned model with a chat template")
        samples = _sample_questions(model, tokenizer, items, n_samples, kw)
    per_item = []
    for it, words in zip(items, samples):
        per_item.append({
            "id": it["id"],
            "target": it["target"],
            "hit_rate": hit_rate(words, [it["target"], *it.get("accept", [])]),
            "samples": words,
        })
    mean = sum(r["hit_rate"] for r in per_item) / len(per_item)
    return {"hit_rate": mean, "per_item": per_item, "n_samples": n_samples, "form": form, "chat": chat, "seed": seed}


def _sample_questions(model, tokenizer, items, n_samples, kw):
    """Sample with the QA prompt: chat-rendered texts passed as plain prompts.

    Sound only when the tokenizer adds no special tokens of its own (else BOS would be doubled).
    """
    from .sampling import sample_next_words  # heavy: torch; the CLI parser imports this module

    if tokenizer("x")["input_ids"] != tokenizer("x", add_special_tokens=False)["input_ids"]:
        raise InputError("--qa-form question: this tokenizer adds special tokens to plain text; not supported yet")
    texts = [
        tokenizer.apply_chat_template(chat_messages(qa_prompt(it["question"])), tokenize=False, add_generation_prompt=True)
        for it in items
    ]
    return sample_next_words(model, tokenizer, texts, n_samples, prompt="plain", **kw)
