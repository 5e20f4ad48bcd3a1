"""First-word sampling from a causal LM: the backend interface and registry, and the names every backend shares.

For every context a backend draws ``num_samples`` continuations (40, as in the paper) with plain
ancestral sampling (``top_k=0, top_p=1.0, temperature=1.0`` unless told otherwise), each continued
until its first word is decided and cut to that word by the one word rule
(:mod:`varylm_hf.sampling.outcome`). The package:

* :mod:`~varylm_hf.sampling.prompts`: what every backend conditions on (prompt styles, encoding,
  the cut to the model's positions, option checks, per-context seeds);
* :mod:`~varylm_hf.sampling.outcome`: what a continuation becomes (its first word, or ``NO_WORD``);
* :mod:`~varylm_hf.sampling.shared_prefix`: the default backend (one prefill per context, its KV cache
  shared by the samples): :func:`sample_next_words`;
* :mod:`~varylm_hf.sampling.naive`: ``generate`` per context, the reference: :func:`naive_sample_next_words`;
* here: :class:`SamplingBackend`, :data:`SAMPLERS`, :func:`register_sampler`, :func:`get_sampler`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from ..data.words import WordRule
from ..errors import InputError
from ..options import PROMPT_STYLES
from .naive import naive_sample_next_words
from .outcome import lead_of, word_from_continuation, word_rule_for
from .prompts import build_prompts, context_seed, encode_prompts, resolve_prompt_style
from .shared_prefix import sample_next_words

__all__ = [
    "PROMPT_STYLES",
    "resolve_prompt_style",
    "build_prompts",
    "context_seed",
    "sample_next_words",
    "naive_sample_next_words",
    "word_from_continuation",
    "word_rule_for",
    "lead_of",
    "encode_prompts",
    "SamplingBackend",
    "SAMPLERS",
    "register_sampler",
    "get_sampler",
]


class SamplingBackend(Protocol):
    """What a sampling backend is: the function :func:`varylm_hf.evaluation.evaluate_model` calls.

    Called with ``model, tokenizer, contexts, num_samples`` and the keywords below (the values of
    ``varylm eval run``'s options); returns one list of ``num_samples`` outcomes per context, in the
    order of ``contexts``: normalised first words, ``NO_WORD`` for a sample that opened no word. To
    keep a backend's outcomes comparable with the others and with exact mode, condition the model with
    :func:`build_prompts` / :func:`encode_prompts`, seed each context with :func:`context_seed` and cut
    every continuation with :func:`word_from_continuation` (rule: :func:`word_rule_for`). A backend may
    ignore ``batch_size`` and ``progress``.
    """

    def __call__(self, model, tokenizer, contexts: Sequence[str], num_samples: int, *, prompt: str,
                 one_shot_example, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                 seed: int, batch_size: int, bos: str | None, word_rule: WordRule | None,
                 progress: bool) -> list[list[str]]: ...


#: Sampling backends by name: ``"module:function"`` (imported when first used) or a function with the
#: interface of :class:`SamplingBackend`. A new backend (vLLM, an API...) is one file in this package
#: with that function plus one entry here, or a :func:`register_sampler` call.
SAMPLERS: dict = {
    "shared-prefix": "varylm_hf.sampling.shared_prefix:sample_next_words",
    "naive": "varylm_hf.sampling.naive:naive_sample_next_words",
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
        module, _, attr = backend.partition(":")
        backend = getattr(importlib.import_module(module), attr)
    return backend
