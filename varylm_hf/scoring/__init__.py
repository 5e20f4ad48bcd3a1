"""Word log-probabilities log q(w|c) for many (context, word) pairs, with prefix sharing.

A word is scored as it would appear after its context (GPT-2 BPE ``" word"``, SentencePiece
``"▁word"``; no space before closing punctuation), so

    log q(w|c) = sum_j log q(t_j | c, t_<j)                      definition="paper"  (eq. 3)
    log q(w|c) = sum_j log q(t_j | c, t_<j) + log B(c, t_1..t_n)  definition="eow"

where ``B`` is the probability that the token after the word ends it under the sampler's word
rule (:mod:`varylm_hf.data.words`, Pimentel & Meister 2024's end-of-word term): a space, most
punctuation (``.``, ``,``, ``'s``) or a special token such as EOS -- but not ``re`` after
``the``, ``-known`` after ``well`` nor ``'t`` after ``can`` (``can't`` is the word ``ca``, as
in the Provo answers). Example: after "The cat sat on", ``q_paper(" the")`` has the mass of every
continuation that starts with the token ``" the"``, including ``" there"`` spelled ``" the" +
"re"``; ``q_eow(" the")`` keeps only the part where the word ends there. So ``q_eow <= q_paper``,
and ``q_eow`` is the probability of the sampler's outcome: exact TVD lives on the sampler's
outcome space (a continuation that does not open a new word is a failure, left as residual
mass). It is not the full Pimentel & Meister word probability, which also divides by the
probability that a new word starts after the context: that is the third definition,

    log q(w|c) = paper + log E(c, w) - log S(c)                  definition="pm"

with ``E`` the probability that the word ends after its last token and ``S`` the probability that a
new word starts after the context (``boundary="pm"``, the default: both as wordsprobability 0.17
computes them -- a token spelled with the space marker ``Ġ``/``▁`` or EOS; the first word of a text,
after an empty context, divides by the mass of the tokens that are not space-marked instead, their
"beginning-of-sentence correction"; :func:`pm_boundary`). ``boundary="wordrule"`` takes ``E`` from
the sampler's word rule (as ``eow``) and ``S`` from the same rule (a space and a letter/digit
first). ``pm`` is not in :data:`DEFINITIONS` (the training definitions); it is in
:data:`WORD_DEFINITIONS`. See docs/surprisal.md.

Strategies (all give the same numbers, to float rounding; see tests/test_scoring.py):

* ``pair``: one sequence per (context, word); the brute force reference.
* ``context``: one forward per context; its words reuse the KV cache (fallback for models
  whose attention refuses 4D masks, e.g. flash-attention).
* ``tree``: each context and its words form a token trie (words sharing tokens share nodes);
  tries are packed into rows and run in ONE forward with a float additive 4D mask
  (0 / finfo.min) of shape (B, 1, Q, K) and explicit position ids.
* ``passage``: like ``tree``, but all contexts of a batch go into one trie, so contexts that
  are token prefixes of each other (the contexts of one Provo passage) share one trunk. The
  prefix property is checked on the token ids; a context whose tokenisation breaks it simply
  gets its own branch from the first differing token. Without gradients (scoring, evaluation) the
  contexts' trunk runs once with a KV cache and the word branches in chunks of 256 tokens that attend
  to it, so attention grows with branches x (trunk + chunk), not with the square of the whole trie;
  with gradients (training) the merged trie runs in one forward, which backpropagates faster on CPU.

Only the positions whose next-token distribution is needed reach the LM head
(``logits_to_keep`` with a boolean mask or position indices), which matters for 50k-token vocabularies.

The package, one responsibility per module:

* :mod:`.tokens`: token ids of contexts and words (:func:`word_token_ids`, :func:`words_token_ids`, :func:`context_token_ids`,
  :func:`encode_batch`);
* :mod:`.boundaries`: which next tokens end or begin a word (:class:`WordEnd`, :class:`WordBegin`,
  :func:`word_end_masks`, :func:`pm_boundary`, :func:`wordrule_begin`);
* :mod:`.model`: the model as the engine sees it (unwrapping, config, forwards that keep only the needed logits);
* :mod:`.gather`: next-token log-probabilities to word log-probabilities, shared by every strategy;
* :mod:`.sequences`: the strategies ``pair`` and ``context``; :mod:`.trie`: ``tree`` and ``passage``;
* :mod:`.engine`: :func:`score_token_ids`, the low-level entry point that checks its input and picks the strategy;
* :mod:`.scorer`: :class:`WordScorer`, :func:`score_words`, :func:`word_logprobs`, :func:`word_loss`.

Every name other code imports from ``varylm_hf.scoring`` is re-exported here, private ones included (to read or
call: a test that monkeypatches an internal patches the submodule where it is looked up, e.g.
``varylm_hf.scoring.engine._score_context``, since patching this package changes nothing the engine sees).
"""

from ..errors import InputError  # noqa: F401  (re-exported: scoring.InputError)
from ..options import BOUNDARIES, STRATEGIES, TRAINING_DEFINITIONS, WORD_DEFINITIONS
from .boundaries import (  # noqa: F401  (_class_log_mass: private, imported by tests)
    WordBegin,
    WordEnd,
    _class_log_mass,
    bow_symbol,
    pm_boundary,
    word_end_masks,
    word_start_mask,
    wordrule_begin,
)
from .engine import score_token_ids
from .model import (  # noqa: F401  (the private helpers: imported by surprisal, sampling, trainer)
    _forward_params,
    _model_dtype_device,
    _model_max_positions,
    _unwrap,
    attention_window,
    supports_tree_attention,
)
from .scorer import WordScorer, score_words, word_logprobs, word_loss
from .sequences import _score_context  # noqa: F401  (private, read by tests)
from .tokens import context_token_ids, encode_batch, word_token_ids, words_token_ids
from .trie import _build_forest, _score_trunk  # noqa: F401  (private, imported by benchmarks and tests)

__all__ = [
    "DEFINITIONS",
    "WORD_DEFINITIONS",
    "BOUNDARIES",
    "STRATEGIES",
    "WordBegin",
    "pm_boundary",
    "wordrule_begin",
    "bow_symbol",
    "word_token_ids",
    "words_token_ids",
    "context_token_ids",
    "word_start_mask",
    "word_end_masks",
    "WordEnd",
    "encode_batch",
    "WordScorer",
    "supports_tree_attention",
    "attention_window",
    "score_token_ids",
    "score_words",
    "word_logprobs",
    "word_loss",
]

#: The training definitions; :data:`WORD_DEFINITIONS` (every definition :func:`score_words` takes, with ``pm``),
#: :data:`BOUNDARIES` and :data:`STRATEGIES` are declared once in :mod:`varylm_hf.options`.
DEFINITIONS = TRAINING_DEFINITIONS
