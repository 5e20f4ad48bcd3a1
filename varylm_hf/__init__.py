"""varylm-hf: teach causal LMs to reproduce human variability in next-word prediction.

Light at import: the names below are loaded on first use (as ``from trl import SFTTrainer`` does), so
``import varylm_hf`` and the pure-maths parts stay fast and free of torch.

>>> import varylm_hf
>>> sorted(varylm_hf.__all__)[:3]
['DEFAULT_WORD_RULE', 'ExactTVDCallback', 'VarCollator']
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "VarTrainer": "training.var", "VarTrainingArguments": "training.var", "train_var": "training.var",
    "VarCollator": "training.collator",
    "ExactTVDCallback": "callbacks", "score_words": "scoring", "word_logprobs": "scoring",
    "word_end_masks": "scoring", "WordScorer": "scoring", "evaluate_model": "evaluation", "exact_word_probs": "evaluation",
    "sample_next_words": "sampling", "load_model_and_tokenizer": "modeling", "load_provo": "data",
    "load_cloze_file": "data", "load_cloze": "data", "split_records": "data", "WordRule": "data.words", "DEFAULT_WORD_RULE": "data.words",
    "first_token_id": "conditioning", "train_instruct": "training.instruct",
    "VarSFTConfig": "training.sft_config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'varylm_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
