"""The option sets of varylm-hf, each declared once: ``name -> one-line description`` (pure Python, no torch).

CLI choices, help texts, validation messages and model-card texts derive from these dicts; the modules that
implement them (:mod:`varylm_hf.scoring`, :mod:`varylm_hf.sampling`, :mod:`varylm_hf.training.instruct`) import them. The
label views, the sampling backends and the sampled metrics have their own registries next to their functions
(:data:`varylm_hf.data.labels.LABEL_MODES`, :data:`varylm_hf.sampling.SAMPLERS`,
:data:`varylm_hf.metrics.SAMPLED_METRICS`).

>>> choices_help(RECIPES)
'sft: TRL SFTTrainer on the augmented rows; var: the same objective with one row per context (each answer a branch of the chat prompt, weighted by its count)'
"""

from __future__ import annotations

__all__ = ["WORD_DEFINITIONS", "TRAINING_DEFINITIONS", "BOUNDARIES", "STRATEGIES", "PROMPT_STYLES", "RECIPES",
           "choices_help"]

#: How a word's probability is computed from its tokens (:mod:`varylm_hf.scoring`, docs/surprisal.md).
WORD_DEFINITIONS: dict[str, str] = {
    "paper": "q(w∣c) = product of the probabilities of the word's tokens (the paper's eq. 3, no end-of-word term)",
    "eow": "product of the word's token probabilities times the probability that the next token ends the word "
           "under varylm's word rule (Pimentel & Meister's end-of-word term, 2024)",
    "pm": "Pimentel & Meister's full word probability: the end-of-word term and the division by the probability "
          "that a new word starts (surprisal tables; not a training loss)",
}
#: The definitions a training loss can use (``pm`` is for surprisal tables).
TRAINING_DEFINITIONS: tuple[str, ...] = ("paper", "eow")
#: Word boundaries of the ``pm`` definition.
BOUNDARIES: dict[str, str] = {
    "pm": "wordsprobability's word boundary (a token that begins with the space marker starts a word)",
    "wordrule": "the sampler's word rule (varylm_hf.data.words)",
}
#: How (context, word) pairs are batched into forward passes; all give the same numbers.
STRATEGIES: dict[str, str] = {
    "pair": "one padded sequence per (context, word) pair",
    "context": "one KV-cached forward per context, its words as branches",
    "tree": "each context and its words as a token trie, tries packed into rows with a 4D mask",
    "passage": "all contexts of a batch in one trie: contexts of a passage share their trunk (run once, cached)",
}
#: What a context is wrapped in before sampling or scoring (:mod:`varylm_hf.sampling`).
PROMPT_STYLES: dict[str, str] = {
    "auto": "instruction when the tokenizer has a chat template, else plain",
    "plain": "the first token (varylm_hf.conditioning) and the context",
    "instruction": "the paper's instruction prompt (Appendix A) in the chat template",
    "one_shot": "the paper's 1-shot prompt with a training example, in the chat template",
}
#: The instruction-tuned recipes (:mod:`varylm_hf.training.instruct`).
RECIPES: dict[str, str] = {
    "sft": "TRL SFTTrainer on the augmented rows",
    "var": "the same objective with one row per context (each answer a branch of the chat prompt, weighted by "
           "its count)",
}


def choices_help(options: dict[str, str]) -> str:
    """``"name: description; ..."`` of an option set, for ``--help`` texts."""
    return "; ".join(f"{name}: {text}" for name, text in options.items())
