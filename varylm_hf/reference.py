"""The packaged real-GPT-2 samples (Ilia & Aziz, 2024) of the paper's test passages, and their evaluation rows.

``varylm eval gpt2-reference`` and the pinned Table 1 numbers (``tests/test_pinned_numbers.py``) read them:
the paper's GPT-2 row recomputed from the original samples, through our pipeline or the reference code's.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from importlib import resources

from .data.normalize import NO_WORD, Normalizer, normalize_word
from .errors import InputError

__all__ = ["load_reference_samples", "reference_gpt2_rows"]


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
    from .evaluation import _check_records, score_sampled  # cycle: evaluation imports reference

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
