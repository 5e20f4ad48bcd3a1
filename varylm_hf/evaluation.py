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
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Sequence
from importlib import resources

from tqdm.auto import tqdm

from . import metrics as M
from .conditioning import first_token_text
from .data.normalize import NO_WORD, Normalizer, normalize_word
from .data.words import DEFAULT_WORD_RULE, WordRule, describe_word_rule
from .errors import InputError
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
    import math

    import torch

    from .sampling import build_prompts, encode_prompts, resolve_prompt_style, word_rule_for
    from .scoring import WordScorer, word_end_masks

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
    from .sampling import get_sampler

    sample_next_words = get_sampler(sampler)
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
    shard = Shard.current()
    everything, records = records, shard.mine(records)
    progress = progress and shard.is_main
    rows: list[dict] = []
    timing: dict[str, float] = {}
    if mode in ("sampled", "both"):
        for seed in seeds:
            t0 = time.perf_counter()
            samples = sample_next_words(
                model, tokenizer, [r["context"] for r in records], num_samples, prompt=prompt,
                one_shot_example=one_shot_example, max_new_tokens=max_new_tokens, temperature=temperature,
                top_k=top_k, top_p=top_p, seed=seed, batch_size=batch_size, progress=progress, bos=bos,
                word_rule=word_rule,
            )
            timing[f"sampled_seed_{seed}_s"] = time.perf_counter() - t0
            rows.extend(evaluate_samples(records, {seed: samples}) if records else [])  # a shard may be empty
    if mode in ("exact", "both"):
        t0 = time.perf_counter()
        qs = exact_word_probs(model, tokenizer, records, prompt=prompt, one_shot_example=one_shot_example,
                              strategy=strategy, progress=progress, bos=bos, word_rule=word_rule)
        timing["exact_s"] = time.perf_counter() - t0
        rows.extend(score_exact(r, q, seeds) for r, q in zip(records, qs))
    rows, records = shard.gather(rows, everything, seeds), everything
    for key in [k for k in timing if k.endswith("_s")]:
        timing[key.replace("_s", "_contexts_per_s")] = len(records) / max(timing[key], 1e-9)
    if shard.world > 1:
        timing["processes"] = shard.world
    from .sampling import resolve_prompt_style

    style = resolve_prompt_style(tokenizer, prompt)
    cfg = {
        "mode": mode, "num_samples": num_samples, "prompt": style,
        "first_token": first_token_text(tokenizer, bos) if style == "plain" else "(chat template)",
        "word_rule": describe_word_rule(word_rule or DEFAULT_WORD_RULE),
        "max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
        "batch_size": batch_size, "exact_definition": "eow", "exact_strategy": strategy,
        **({"sampler": sampler} if mode != "exact" else {}),
        **(config or {}),
    }
    summary = summarize(rows, name=name, seeds=seeds, config=cfg, timing=timing)
    if out_dir is not None and shard.is_main:  # one output folder, written once
        write_run(out_dir, rows, summary, figures=figures, overwrite=overwrite)
    shard.barrier()
    return (summary, rows) if return_rows else summary


class Shard:
    """Which contexts this process evaluates under ``accelerate launch`` / ``torchrun`` (one process: all).

    Passages are dealt round-robin over the processes (sorted passage ids), so the contexts of one
    passage stay together for prefix sharing; every context is sampled with its own seeded generator,
    so its rows do not depend on the process it lands on. Rows are gathered on every process and put
    back in the one-process order (mode, seed, context), so the main process writes what one process
    would have written.
    """

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @classmethod
    def current(cls) -> "Shard":
        """The shard of this process (``WORLD_SIZE`` > 1 starts accelerate's process group)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU (accelerate's default skips it)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        """The process that writes outputs and shows progress bars."""
        return self.rank == 0

    def mine(self, records: list[dict]) -> list[dict]:
        """This process's records (all of them with one process)."""
        if self.world == 1:
            return records
        passages = sorted({str(r.get("passage_id")) for r in records})
        owner = {p: i % self.world for i, p in enumerate(passages)}
        return [r for r in records if owner[str(r.get("passage_id"))] == self.rank]

    def gather(self, rows: list[dict], records: list[dict], seeds: Sequence[int]) -> list[dict]:
        """Every process's rows, in the order one process produces them."""
        if self.world == 1:
            return rows
        order = {r["id"]: i for i, r in enumerate(records)}
        mode_rank = {"sampled": 0, "exact": 1}
        seed_rank = {s: i for i, s in enumerate(seeds)}
        return self.gather_sorted(rows, key=lambda r: (mode_rank[r["mode"]], seed_rank.get(r["seed"], 0),
                                                       order[r["id"]]))

    def gather_sorted(self, items: list, key) -> list:
        """Every process's ``items`` (picklable), sorted by ``key`` (a stable sort; one process: as given)."""
        if self.world == 1:
            return items
        from accelerate.utils import gather_object

        gathered = gather_object([items])  # one list per process
        return sorted((item for part in gathered for item in part), key=key)

    def barrier(self) -> None:
        """Wait until the main process has written the run."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


# --------------------------------------------------------------------------- tables


# --------------------------------------------------------------------------- files


# --------------------------------------------------------------------------- real GPT-2 samples


def load_reference_samples(name: str = "gpt2_samples_test") -> dict:
    """The packaged real-GPT-2 samples (Ilia & Aziz, 2024) for the paper's test passages.

    Returns the file's dict: ``contexts`` is a list of ``{passage_id, word_position, context,
    samples: [[word, count], ...]}``, words as the original code stored them (case kept,
    punctuation removed, ``"Failed to generate word"`` for a failure).
    """
    ref = resources.files("varylm_hf") / "data" / "provo" / f"{name}.json.gz"
    if not ref.is_file():
        raise InputError(f"no packaged reference samples named {name!r}")
    with ref.open("rb") as fh:
        return json.loads(gzip.decompress(fh.read()).decode("utf-8"))


def reference_gpt2_rows(records, *, seeds: Sequence[int] = (42,), quirks: bool = False,
                        normalizer: Normalizer | None = None) -> list[dict]:
    """Rows for the real GPT-2 samples against ``records`` (matched by passage and word position).

    ``quirks=False``: our pipeline (each sample normalised like the human answers, failures kept
    as ``NO_WORD``). ``quirks=True``: the reference code's handling (samples compared as stored,
    case-sensitive, failures dropped; TVD 0.5 when every sample failed). Only one set of samples
    exists, so every seed reuses it (seeds then vary the oracle split only).
    """
    ref = load_reference_samples()
    failure = ref.get("failure_label", "Failed to generate word")
    by_key = {(c["passage_id"], c["word_position"]): c for c in ref["contexts"]}
    records = _check_records(records)
    rows = []
    for r in records:
        c = by_key.get((r["passage_id"], r["word_position"]))
        if c is None:
            raise InputError(f"record {r['id']}: no reference GPT-2 samples (only the paper's test passages)")
        raw = [w for w, n in c["samples"] for _ in range(n)]
        if quirks:
            words = [w for w in raw if w != failure]
        else:
            words = [NO_WORD if w == failure else (normalize_word(w, normalizer) or NO_WORD) for w in raw]
        for seed in seeds:
            if not words:  # the reference's behaviour when every sample failed
                row = score_sampled(r, [NO_WORD], seed)
                row.update(tvd=0.5, samples={})
            else:
                row = score_sampled(r, words, seed)
            rows.append(row)
    return rows
