"""Passage-level splits (never by context): the paper's split and seeded random ones.

The paper split the sorted passage ids 1..55 with scikit-learn's ``train_test_split``
(test_size=0.2, random_state=42), then split the rest again (test_size=0.1,
random_state=42) for validation. :func:`train_test_split_ids` reimplements that shuffle
(``numpy.random.RandomState(seed).permutation``, ``ceil`` for the test count) without
depending on scikit-learn; a test checks it reproduces the paper's ids. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import InputError

__all__ = ["PAPER_SPLIT", "train_test_split_ids", "passage_split", "split_records", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "validation", "test")
#: The paper's passage ids (train = the other 39 of 1..55).
PAPER_SPLIT = {
    "test": [6, 13, 14, 20, 27, 32, 33, 42, 44, 50, 53],
    "validation": [2, 21, 23, 41, 55],
}


def _flag(name: str) -> str:
    """``validation_size`` -> "--validation-size": the CLI flag of an argument (named after it in errors)."""
    return "--" + name.replace("_", "-")


def _check_fraction(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(f"`{name}` must be a fraction in (0, 1), got {value!r} ({_flag(name)})")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"`seed` must be an integer in [0, 2**32 - 1], got {seed!r} (--seed)")
    return seed


def train_test_split_ids(ids: Sequence, test_size: float, seed: int, *, name: str = "test_size") -> tuple[list, list]:
    """Split ``ids`` like ``sklearn.model_selection.train_test_split(ids, test_size=, random_state=)``.

    Returns ``(train, test)`` in the shuffled order scikit-learn returns them. ``name`` is the
    argument that errors name (``passage_split`` passes ``"validation_size"`` for its second split).
    """
    import numpy as np  # heavy: numpy; the CLI parser imports varylm_hf.data (paper split needs none)

    _check_fraction(test_size, name)
    _check_seed(seed)
    n = len(ids)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_test == 0 or n_train == 0:
        part = "validation" if name == "validation_size" else "test"
        if n_train == 0:
            rest = "train" if name == "validation_size" else "train and validation"
            raise InputError(f"`{name}`={test_size} puts all {n} passage(s) in {part}, none left for {rest} ({_flag(name)})")
        raise InputError(f"`{name}`={test_size} gives {part} no passage of {n} ({_flag(name)})")
    perm = np.random.RandomState(seed).permutation(n)
    test = [ids[i] for i in perm[:n_test]]
    train = [ids[i] for i in perm[n_test : n_test + n_train]]
    return train, test


def passage_split(
    passage_ids: Sequence[int], test_size: float = 0.2, validation_size: float = 0.1, seed: int = 42
) -> dict[str, list[int]]:
    """Seeded passage-level split: ``test_size`` of the passages, then ``validation_size`` of the rest.

    With the defaults on passages 1..55 this is the paper's split. Returns sorted id lists.
    """
    _check_fraction(test_size, "test_size")
    _check_fraction(validation_size, "validation_size")
    ids = sorted(set(passage_ids))
    if len(ids) < 3:
        raise InputError(f"a random train/validation/test split needs at least 3 passages, got {len(ids)} "
                         "(add a passage column, or more passages)")
    rest, test = train_test_split_ids(ids, test_size, seed)
    train, validation = train_test_split_ids(rest, validation_size, seed, name="validation_size")
    return {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}


def split_records(
    records: Sequence[dict],
    split: str | dict = "paper",
    *,
    test_size: float = 0.2,
    validation_size: float = 0.1,
    seed: int = 42,
) -> dict[str, list[dict]]:
    """Group records into train/validation/test by passage.

    Args:
        records: cloze records (see :mod:`varylm_hf.data.records`).
        split: ``"paper"`` (the paper's fixed ids; passages not listed go to train),
            ``"random"`` (:func:`passage_split` with the fractions and seed below), or a dict
            ``{"test": [...], "validation": [...]}`` of passage ids.
        test_size, validation_size, seed: for ``"random"``.
    """
    if split == "paper":
        assignment = PAPER_SPLIT
    elif split == "random":
        assignment = passage_split([r["passage_id"] for r in records], test_size, validation_size, seed)
    elif isinstance(split, dict):
        assignment = split
    else:
        raise InputError(f"`split` must be 'paper', 'random' or a dict of passage ids, got {split!r}")
    where = {}
    for name in ("validation", "test"):
        for pid in assignment.get(name, []):
            where[int(pid)] = name
    out: dict[str, list[dict]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        out[where.get(record["passage_id"], "train")].append(record)
    return out
