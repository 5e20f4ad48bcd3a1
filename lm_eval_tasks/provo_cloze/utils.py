"""lm-evaluation-harness glue for the Provo cloze tasks (``provo_cloze_tvd``, ``provo_cloze_exact``).

Everything that decides a number comes from :mod:`varylm_hf` (nothing is copied here):

* the word outcome of a continuation: :func:`varylm_hf.sampling.word_from_continuation`
  (:class:`varylm_hf.data.words.WordRule`, the sampler's cut and normaliser);
* the per-context scores of samples: :func:`varylm_hf.evaluation.score_sampled` (TVD, oracle TVD,
  entropy, coverage, failure rate — the same row ``varylm eval run`` writes);
* the surface forms summed per human word: :func:`varylm_hf.evaluation.surface_forms`;
* the exact TVD: :func:`varylm_hf.metrics.exact_tvd`.

The functions below only move data between lm-eval's shapes and those calls, so the tasks work
with any lm-eval model backend (``hf``, ``vllm``, API backends with loglikelihood/generation).

Options, passed with ``--metadata '{...}'`` (CLI) or ``simple_evaluate(metadata=...)``:

* ``dataset_path``: a local folder written by ``varylm data build`` or a Hub id
  (default ``varylm/provo_cloze``); ``"packaged"`` reads the norms shipped inside varylm-hf.
  When the default Hub id cannot be reached the packaged copy is used (with a warning): it is
  the same data (``varylm data build`` writes it, ``paper`` split).
* ``first_token``: the text put in front of every context (default ``""``: none). A special token
  written as text (``"<|endoftext|>"``) is read by HF tokenizers as that token, so
  ``"<|endoftext|>"`` conditions GPT-2/SmolLM2 the way ``varylm eval run`` does by default;
  ``"auto"`` asks :func:`varylm_hf.conditioning.first_token_id` with the tokenizer named by
  ``pretrained``/``tokenizer`` in ``--model_args`` (which lm-eval passes on as metadata).
* ``oracle_seed``: the seed of the oracle's random split (default 42, varylm's first seed).
"""

from __future__ import annotations

import logging
import math
import os

from varylm_hf import metrics as M
from varylm_hf.data.normalize import NO_WORD
from varylm_hf.evaluation import score_sampled, surface_forms
from varylm_hf.sampling import word_from_continuation

log = logging.getLogger("lm_eval.provo_cloze")

DEFAULT_DATASET = "varylm/provo_cloze"
#: Per-document numbers of the sampled task (keys of :func:`varylm_hf.evaluation.score_sampled`).
SAMPLED_METRICS = ("tvd", "oracle_tvd", "entropy", "human_entropy", "coverage", "failure_rate")


# --------------------------------------------------------------------------- dataset


def _packaged():
    from varylm_hf.data import load_provo, split_records
    from varylm_hf.data.hub_folder import to_datasetdict

    return to_datasetdict(split_records(load_provo(), "paper"))


def _resolve_first_token(first_token, kwargs) -> str:
    if first_token in (None, "", "none"):
        return ""
    if first_token != "auto":
        return str(first_token)
    name = kwargs.get("tokenizer") or kwargs.get("pretrained")
    if not isinstance(name, str):
        raise ValueError("first_token='auto' needs a tokenizer name: pass pretrained=... in --model_args, "
                         "or give the token itself, e.g. --metadata '{\"first_token\": \"<|endoftext|>\"}'")
    from varylm_hf.conditioning import first_token_id
    from varylm_hf.modeling import load_tokenizer

    tok = load_tokenizer(name, kwargs.get("gguf_file"))  # Hub id, folder, .gguf, or "smollm2-gguf"
    tid = first_token_id(tok, "auto")
    return "" if tid is None else str(tok.convert_ids_to_tokens(tid))


def load_dataset(dataset_path: str | None = None, first_token: str | None = "", oracle_seed: int = 42,
                 hub_id: str = DEFAULT_DATASET, **kwargs):
    """``custom_dataset`` of both tasks: the cloze DatasetDict plus ``prompt`` (first token + context) and ``oracle_seed``.

    ``kwargs`` are the rest of lm-eval's metadata (task version, model_args...), ignored.
    """
    import datasets

    path = dataset_path or hub_id
    if path == "packaged":
        dsd, source = _packaged(), "packaged"
    else:
        try:
            dsd = datasets.load_dataset(path)
            source = path
        except Exception as err:  # noqa: BLE001 - offline Hub: any error from the Hub client
            if dataset_path or os.path.exists(path):
                raise
            log.warning("provo_cloze: could not load %r (%s: %s); using the copy packaged with varylm-hf",
                        path, type(err).__name__, str(err)[:200])
            dsd, source = _packaged(), "packaged"
    head = _resolve_first_token(first_token, kwargs)
    seed = int(oracle_seed)
    log.info("provo_cloze: dataset %s, first token %r", source, head or "(none)")
    # options travel in the documents: lm-eval may import this module once per `!function` reference
    return dsd.map(lambda d: {"prompt": head + d["context"].rstrip(), "oracle_seed": seed})


# --------------------------------------------------------------------------- prompts and choices


def _oracle_seed(doc) -> int:
    return int(doc.get("oracle_seed", 42))


def doc_to_text(doc) -> str:
    """The context as the model sees it: the first token (``first_token`` option, default none) + context."""
    return doc["prompt"] if "prompt" in doc else doc["context"].rstrip()


def forms_per_word(doc) -> list[list[str]]:
    """Per human word (dataset order), the surface forms whose probabilities exact mode sums."""
    return [surface_forms(a["word"]) for a in doc["answers"]]


def doc_to_choice(doc) -> list[str]:
    """All surface forms of all human words, flat; lm-eval asks ``loglikelihood(context, " " + form)`` for each."""
    return [f for forms in forms_per_word(doc) for f in forms]


def doc_to_target(doc) -> int:
    """Index (in :func:`doc_to_choice`) of the majority answer's first form; only shown in logged samples."""
    k = 0
    for a, forms in zip(doc["answers"], forms_per_word(doc)):
        if a["word"] == doc["majority"]:
            return k
        k += len(forms)
    return 0


# --------------------------------------------------------------------------- sampled task


def first_words(continuation: str) -> str:
    """The outcome of one lm-eval continuation (varylm's word rule, plain context: one space first).

    lm-eval returns the text cut at its stop sequences (``"\\n"``, EOS) and no end flag, so the text
    is read as ended: a stop at a newline or EOS ends the word, as in varylm's sampler. (A word
    still unfinished after ``max_gen_toks`` is a failure in varylm and the partial word here.)
    """
    return word_from_continuation(continuation, ended=True)


def first_words_filter(resps, docs):
    """lm-eval filter: each document's continuations -> their first words (logged as ``filtered_resps``)."""
    return [[first_words(c) for c in rs] for rs in resps]


def process_results_sampled(doc, results) -> dict:
    """Per-document numbers of the sampled words (``results[0]``: the filtered first words)."""
    words = list(results[0])
    if not words:
        words = [NO_WORD]
    row = score_sampled(doc, words, _oracle_seed(doc))
    return {k: row[k] for k in SAMPLED_METRICS}


# --------------------------------------------------------------------------- exact task


def exact_scores(doc, logliks) -> dict:
    """Exact numbers of one document from the loglikelihoods of :func:`doc_to_choice` (same order).

    ``q(w)`` sums ``exp`` over the word's surface forms (eq. 3: the tokens of ``" " + form`` after the
    context, no end-of-word term). ``human_mass = sum_H q`` is reported as is; eq. 3 can count one
    continuation under two words (``" self"`` also covers ``" self-esteem"``), so the masses can sum
    above one: :func:`varylm_hf.metrics.exact_tvd` refuses that (beyond its tolerance), and here the
    ``q`` are then scaled down to total one before the TVD (the residual term is then zero).
    """
    q, k = {}, 0
    for a, forms in zip(doc["answers"], forms_per_word(doc)):
        q[a["word"]] = sum(math.exp(ll) for ll in logliks[k: k + len(forms)])
        k += len(forms)
    if k != len(logliks):
        raise ValueError(f"document {doc.get('id')}: {len(logliks)} loglikelihoods for {k} surface forms")
    mass = sum(q.values())
    scaled = {w: v / mass for w, v in q.items()} if mass > 1.0 else q
    return {"exact_tvd": M.exact_tvd(doc["answers"], scaled), "human_mass": mass,
            "oracle_tvd": M.oracle_tvd(doc["answers"], _oracle_seed(doc))}


def process_results_exact(doc, results) -> dict:
    """``results``: one ``(loglikelihood, is_greedy)`` per choice of :func:`doc_to_choice`."""
    return exact_scores(doc, [float(r[0]) for r in results])
