"""Human cloze norms: loaders, the word normaliser, passage-level splits, label views and the Hub layout.

>>> from varylm_hf.data import load_provo, split_records, label_distribution
>>> splits = split_records(load_provo(), "paper")
>>> {name: len(recs) for name, recs in splits.items()}
{'train': 1892, 'validation': 258, 'test': 536}
"""

from .cloze import load_cloze_file
from .hub_folder import (
    build_dataset_folder,
    features,
    load_cloze,
    load_cloze_dataset,
    records_from_dataset,
    render_card,
    summarize,
    to_datasetdict,
)
from .labels import LABEL_MODES, label_distribution
from .normalize import DEFAULT_NORMALIZER, NO_WORD, Normalizer, first_word, normalize_word
from .provo import PROVO_SHA256, PROVO_URL, download_provo_csv, load_provo
from .records import RECORD_KEYS
from .splits import PAPER_SPLIT, passage_split, split_records, train_test_split_ids

__all__ = [
    "DEFAULT_NORMALIZER", "LABEL_MODES", "NO_WORD", "Normalizer", "PAPER_SPLIT", "PROVO_SHA256", "PROVO_URL",
    "RECORD_KEYS", "build_dataset_folder", "download_provo_csv", "features", "first_word", "label_distribution",
    "load_cloze", "load_cloze_dataset", "load_cloze_file", "load_provo", "normalize_word", "passage_split", "records_from_dataset",
    "render_card", "split_records", "summarize", "to_datasetdict", "train_test_split_ids",
]

