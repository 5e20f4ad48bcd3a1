"""Evaluate a model's next-word distribution against human cloze answers: rows, summary, table, figures.

Two modes, usable together:

* ``sampled`` (the paper's): per context, ``num_samples`` ancestral samples cut to their first
  word (:mod:`varylm_hf.sampling`), ``TVD(p, q_hat)``; repeated for every seed.
* ``exact``: per context, the exact probability ``q(w)`` of every human word (the scorer's
  ``eow`` definition, summed over the surface forms that normalise to ``w``: the word and its
  capitalised form) and ``TVD = 1/2 (sum_H |p - q| + (1 - sum_H q))`` (:func:`metrics.exact_tvd`).
  Deterministic: no seed, no sampling noise.

Every run also reports the *oracle* (human answers split into two halves, one split per seed),
the failure rate (samples with no word), the entropy of the model's sampled distribution and
the fraction of distinct human words the model produced.

Outputs of :func:`evaluate_model` / :func:`write_run` in ``out_dir``:

* ``contexts.jsonl``: one row per (context, mode, seed) with every per-context number;
* ``summary.json``: means, mean ± SD over seeds, configuration and timing;
* ``table.md``: the paper's Table 1 layout (model row and Oracle row);
* ``fig_tvd_hist.png`` (Fig. 1), ``fig_tvd_minus_oracle.png`` (Fig. 3),
  ``fig_entropy.png`` (Fig. 6), ``fig_coverage.png`` (Fig. 7);
  :func:`compare_runs` adds ``fig_tvd_change.png`` (Fig. 4) for two or more runs.

Re-exported here: :class:`~varylm_hf.distributed.Shard` (contexts dealt to processes) and the packaged
real-GPT-2 samples (:mod:`varylm_hf.reference`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from tqdm.auto import tqdm

from . import metrics as M
from .conditioning import first_token_text
from .data.normalize import Normalizer
from .data.words import DEFAULT_WORD_RULE, WordRule, describe_word_rule
from .distributed import Shard
from .errors import InputError
from .reference import load_reference_samples, reference_gpt2_rows
from .report import (  # noqa: F401 - the reports' names stay importable from here
    ROWS_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    _check_out_dir,
    _row_oracle,
    compare_runs,
    load_run,
    markdown_table,
    summarize,
    write_run,
)

__all__ = [
    "MODES",
    "Shard",
    "surface_forms",
    "score_sampled",
    "score_exact",
    "exact_word_probs",
    "evaluate_samples",
    "evaluate_model",
    "summarize",
    "markdown_table",
    "write_run",
    "load_run",
    "compare_runs",
    "load_reference_samples",
    "reference_gpt2_rows",
]

MODES = ("sampled", "exact", "both")


# --------------------------------------------------------------------------- per-context scores


def score_sampled(record: dict, samples: Sequence[str], seed: int) -> dict:
    """Per-context numbers of one seed's samples (already normalised words, ``NO_WORD`` for failures):
    every metric of :data:`varylm_hf.metrics.SAMPLED_METRICS`, the sample count and the sample counts by word."""
    return {
        **_context_keys(record),
        "mode": "sampled",
        "seed": seed,
        **{name: fn(record, samples, seed) for name, fn in M.SAMPLED_METRICS.items()},
        "num_samples": len(samples),
        "samples": M.counts_of(samples),
    }


def score_exact(record: dict, q: dict[str, float], oracle_seeds: Sequence[int] | int) -> dict:
    """Per-context numbers from exact probabilities ``q`` of the human words.

    The oracle is computed for every seed (``oracle_by_seed``); ``oracle_tvd`` is the first seed's.
    """
    human = record["answers"]
    mass = sum(q.get(a["word"], 0.0) for a in human)
    seeds = [oracle_seeds] if isinstance(oracle_seeds, int) else list(oracle_seeds)
    oracle = {str(s): M.oracle_tvd(human, s) for s in seeds}
    return {
        **_context_keys(record),
        "mode": "exact",
        "seed": None,
        "tvd": M.exact_tvd(human, q, tolerance=1e-4),
        "oracle_tvd": oracle[str(seeds[0])],
        "oracle_by_seed": oracle,
        "human_mass": mass,
        "human_entropy": M.entropy(human),
        "q": {a["word"]: q.get(a["word"], 0.0) for a in human},
    }


def _context_keys(record: dict) -> dict:
    return {k: record.get(k) for k in ("id", "passage_id", "word_position", "context")}


def _check_records(records) -> list[dict]:
    records = list(records)
    if not records:
        raise InputError("no contexts to evaluate (empty split, or --limit 0)")
    for i, r in enumerate(records):
        missing = [k for k in ("context", "answers", "num_answers") if k not in r]
        if missing:
            raise InputError(f"record {i} ({r.get('id', '?')}): missing {', '.join(missing)}")
        if r["num_answers"] < 2:
            raise InputError(f"record {r.get('id', i)}: needs at least 2 human answers, got {r['num_answers']}")
    return records


# --------------------------------------------------------------------------- exact mode


def surface_forms(word: str, rule: WordRule = DEFAULT_WORD_RULE) -> list[str]:
    """Surface forms whose exact probabilities add up to the normalised word's (:meth:`WordRule.surface_forms`).

    A sampled ``"The"`` normalises to ``"the"``, so exact ``q("the")`` includes ``q("The")``; a sampled
    ``"can't"`` is the word ``"ca"`` (Treebank split), so ``q("ca")`` includes ``q("can't")``. Trailing
    punctuation (``"the,"``) is covered by the ``eow`` end-of-word term.
    """
    return rule.surface_forms(word)


def _countable_forms(tokenizer, forms: list[str], lead: str, end) -> list[str]:
    """The forms to sum for one word: spellable without the unknown token, and not already counted.

    A form whose tokens extend another form's tokens by a token that ends that other form (``"can't"``
    spelled ``"▁ca" + "n't"`` after ``"ca"``) is inside that form's end-of-word mass: summing both
    would count it twice. The first form (the word itself) is always kept.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    kept: list[tuple[str, list[int]]] = []
    for i, form in enumerate(forms):
        ids = list(tokenizer(lead + form, add_special_tokens=False)["input_ids"])
        if i and (not ids or (unk is not None and unk in ids)):
            continue  # a form the tokenizer can only write as <unk> is never sampled
        inside = any(len(g) < len(ids) and ids[: len(g)] == g and g and ids[len(g)] < end.masks.shape[1]
                     and bool(end.masks[int(end.token_class[g[-1]]), ids[len(g)]]) for _, g in kept)
        if i == 0 or not inside:
            kept.append((form, ids))
    return [f for f, _ in kept]


def _passage_runs(records) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive records of one passage."""
    runs, start = [], 0
    for i in range(1, len(records) + 1):
        if i == len(records) or records[i].get("passage_id") != records[start].get("passage_id"):
            runs.append((start, i))
            start = i
    return runs


def exact_word_probs(model, tokenizer, records, *, prompt: str = "auto", one_shot_example=None,
                     strategy: str = "passage", batch_size: int | None = None, progress: bool = False,
                     normalizer: Normalizer | None = None, bos: str | None = "auto",
                     word_rule: WordRule | None = None) -> list[dict[str, float]]:
    """Exact ``q(w|c)`` (``eow`` definition, the sampler's outcome space) of every human word of every record.

    The model is conditioned exactly as the sampler conditions it (plain: first token + context,
    :mod:`varylm_hf.conditioning`; chat prompts: the formatted prompt, the word starting the
    response). Each word's probability adds the probabilities of its :func:`surface_forms` under the
    sampler's word rule (forms the tokenizer can only spell with its unknown token are left out).
    """
    import torch  # heavy: torch; gpt2-reference and the reports run without it

    # heavy: torch; gpt2-reference and the reports run without it
    from .sampling import build_prompts, encode_prompts, resolve_prompt_style, word_rule_for
    from .scoring import WordScorer, word_end_masks  # heavy: torch; gpt2-reference and the reports run without it

    rule = word_rule_for(normalizer, word_rule)
    style = resolve_prompt_style(tokenizer, prompt)
    words = [[a["word"] for a in r["answers"]] for r in records]
    lead = " " if style == "plain" else ""
    end = word_end_masks(tokenizer, None, rule)
    forms = [[_countable_forms(tokenizer, surface_forms(w, rule), lead, end) for w in ws] for ws in words]
    flat = [[f for fs in per for f in fs] for per in forms]
    scorer = WordScorer(model, tokenizer, definition="eow", strategy=strategy, word_rule=rule, bos=bos,
                        batch_size=batch_size)
    if style != "plain":
        prompts = build_prompts(tokenizer, [r["context"] for r in records], style, one_shot_example)
        prompt_ids = encode_prompts(tokenizer, prompts, chat=True)
    logps: list = []
    bar = tqdm(total=len(records), desc="exact word probabilities", unit="ctx", disable=not progress)
    # one call per passage: batches never straddle two passages, so the numbers do not depend on which
    # other contexts are evaluated with them (one process or a shard of several give the same floats)
    for start, stop in _passage_runs(records):
        with torch.no_grad():
            if style == "plain":
                part = scorer.score([r["context"] for r in records[start:stop]], flat[start:stop], progress=False)
            else:  # prepared conditioning: the chat prompt, the word starting the response (no leading space)
                part = scorer.score_prepared(prompt_ids[start:stop], flat[start:stop], progress=False)
        logps.extend(t.tolist() for t in part)
        bar.update(stop - start)
    bar.close()
    out = []
    for ws, per, lp in zip(words, forms, logps):
        q, k = {}, 0
        for w, fs in zip(ws, per):
            q[w] = sum(math.exp(v) for v in lp[k : k + len(fs)])
            k += len(fs)
        out.append(q)
    return out


# --------------------------------------------------------------------------- runs


def evaluate_samples(records, samples_by_seed: dict[int, list[list[str]]]) -> list[dict]:
    """Rows for already-drawn samples: ``samples_by_seed[seed][i]`` are the words of ``records[i]``."""
    records = _check_records(records)
    rows = []
    for seed, samples in samples_by_seed.items():
        if len(samples) != len(records):
            raise InputError(f"seed {seed}: {len(samples)} sample lists for {len(records)} contexts")
        rows.extend(score_sampled(r, s, seed) for r, s in zip(records, samples))
    return rows


def evaluate_model(
    model,
    tokenizer,
    records,
    *,
    mode: str = "sampled",
    seeds: Sequence[int] = (42,),
    num_samples: int = 40,
    prompt: str = "auto",
    one_shot_example=None,
    batch_size: int = 4,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    strategy: str = "passage",
    bos: str | None = "auto",
    word_rule: WordRule | None = None,
    sampler: str = "shared-prefix",
    name: str = "model",
    out_dir: str | os.PathLike | None = None,
    figures: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    config: dict | None = None,
    return_rows: bool = False,
):
    """Evaluate ``model`` on ``records`` (cloze records: ``context``, ``answers``...) and summarise.

    Args:
        model, tokenizer: a loaded causal LM (see :func:`varylm_hf.modeling.load_model_and_tokenizer`).
        records: the contexts to evaluate, e.g. ``split_records(load_provo())["test"]``.
        mode: ``"sampled"``, ``"exact"`` or ``"both"``.
        seeds: one sampling run (and one oracle split) per seed; the paper used 42, 123, 456.
        num_samples: samples per context (paper: 40).
        prompt: ``"auto"``, ``"plain"``, ``"instruction"`` or ``"one_shot"`` (:mod:`varylm_hf.sampling`).
        one_shot_example: ``(context, answers)`` from the training split, for ``"one_shot"``.
        batch_size: contexts per sampling batch (the cache holds ``batch_size * num_samples`` rows).
        max_new_tokens, temperature, top_k, top_p: sampling controls (defaults: ancestral sampling).
        strategy: scoring strategy of exact mode (:mod:`varylm_hf.scoring`); ``"passage"`` shares the
            prefix of consecutive contexts of a passage (same numbers as ``"tree"``, faster).
        bos: first token of plain contexts (:mod:`varylm_hf.conditioning`), in sampling and exact mode alike.
        word_rule: the word outcome (:mod:`varylm_hf.data.words`) of the sampler's cut and the exact masks.
        sampler: the sampling backend of sampled mode, a name in :data:`varylm_hf.sampling.SAMPLERS`
            (default ``"shared-prefix"``; ``"naive"``: ``generate`` per context).
        name: the model's row label in tables and figures.
        out_dir: when given, :func:`write_run` writes rows, summary, table and figures there.
        figures: draw the figures (needs matplotlib).
        overwrite: replace an existing run in ``out_dir``.
        progress: tqdm bars with contexts/s.
        config: extra fields recorded in the summary (model id, adapter, split...).
        return_rows: also return the per-context rows.

    Returns:
        The summary dict (see :func:`summarize`), or ``(summary, rows)`` with ``return_rows``.
    """
    backend, seeds, records = _check_run(sampler, mode, seeds, records, out_dir, overwrite)
    shard = Shard.current()
    everything, records = records, shard.mine(records)
    sampling = dict(prompt=prompt, one_shot_example=one_shot_example, max_new_tokens=max_new_tokens,
                    temperature=temperature, top_k=top_k, top_p=top_p, batch_size=batch_size, bos=bos,
                    word_rule=word_rule)
    rows, timing = _model_rows(model, tokenizer, records, backend, mode=mode, seeds=seeds, num_samples=num_samples,
                               sampling=sampling, strategy=strategy, progress=progress and shard.is_main)
    rows, records = shard.gather(rows, everything, seeds), everything
    for key in [k for k in timing if k.endswith("_s")]:
        timing[key[: -len("_s")] + "_contexts_per_s"] = len(records) / max(timing[key], 1e-9)
    if shard.world > 1:
        timing["processes"] = shard.world
    cfg = _run_config(tokenizer, mode=mode, num_samples=num_samples, sampling=sampling, strategy=strategy,
                      sampler=sampler, config=config)
    summary = summarize(rows, name=name, seeds=seeds, config=cfg, timing=timing)
    if out_dir is not None and shard.is_main:  # one output folder, written once
        write_run(out_dir, rows, summary, figures=figures, overwrite=overwrite)
    shard.barrier()
    return (summary, rows) if return_rows else summary


def _check_run(sampler: str, mode: str, seeds, records, out_dir, overwrite: bool):
    """``(backend, seeds, records)`` of an :func:`evaluate_model` call, every argument checked (one-line errors)."""
    from .sampling import get_sampler  # heavy: torch; gpt2-reference and the reports run without it

    backend = get_sampler(sampler)
    if mode not in MODES:
        raise InputError(f"--mode {mode}: expected one of {', '.join(MODES)}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {seeds}: seeds must be distinct")
    records = _check_records(records)
    if out_dir is not None:
        _check_out_dir(out_dir, overwrite)
    return backend, seeds, records


def _model_rows(model, tokenizer, records, backend, *, mode: str, seeds: list[int], num_samples: int,
                sampling: dict, strategy: str, progress: bool) -> tuple[list[dict], dict[str, float]]:
    """This process's rows (sampled, seed by seed, then exact) and the seconds each part took.

    ``sampling``: the backend's keyword options but ``seed`` and ``progress`` (exact mode takes the
    conditioning ones: prompt, one-shot example, first token, word rule).
    """
    rows: list[dict] = []
    timing: dict[str, float] = {}
    if mode in ("sampled", "both"):
        for seed in seeds:
            t0 = time.perf_counter()
            samples = backend(model, tokenizer, [r["context"] for r in records], num_samples, seed=seed,
                              progress=progress, **sampling)
            timing[f"sampled_seed_{seed}_s"] = time.perf_counter() - t0
            rows.extend(evaluate_samples(records, {seed: samples}) if records else [])  # a shard may be empty
    if mode in ("exact", "both"):
        t0 = time.perf_counter()
        qs = exact_word_probs(model, tokenizer, records, prompt=sampling["prompt"],
                              one_shot_example=sampling["one_shot_example"], strategy=strategy, progress=progress,
                              bos=sampling["bos"], word_rule=sampling["word_rule"])
        timing["exact_s"] = time.perf_counter() - t0
        rows.extend(score_exact(r, q, seeds) for r, q in zip(records, qs))
    return rows, timing


def _run_config(tokenizer, *, mode: str, num_samples: int, sampling: dict, strategy: str, sampler: str,
                config: dict | None) -> dict:
    """The ``config`` of a run's summary: the options as run (prompt style resolved), then ``config``'s fields."""
    from .sampling import resolve_prompt_style  # heavy: torch; gpt2-reference and the reports run without it

    style = resolve_prompt_style(tokenizer, sampling["prompt"])
    return {
        "mode": mode, "num_samples": num_samples, "prompt": style,
        "first_token": first_token_text(tokenizer, sampling["bos"]) if style == "plain" else "(chat template)",
        "word_rule": describe_word_rule(sampling["word_rule"] or DEFAULT_WORD_RULE),
        "max_new_tokens": sampling["max_new_tokens"], "temperature": sampling["temperature"],
        "top_k": sampling["top_k"], "top_p": sampling["top_p"], "batch_size": sampling["batch_size"],
        "exact_definition": "eow", "exact_strategy": strategy,
        **({"sampler": sampler} if mode != "exact" else {}),
        **(config or {}),
    }
