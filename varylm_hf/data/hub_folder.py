"""Datasets in the Hub layout: a DatasetDict in memory, or a folder ``load_dataset`` reads.

The folder holds one parquet file per split under ``data/`` and a README.md whose YAML
``configs:`` maps splits to files (no loading script: datasets >= 4 refuses them)::

    provo_cloze/
      README.md
      data/train-00000-of-00001.parquet
      data/validation-00000-of-00001.parquet
      data/test-00000-of-00001.parquet

The same folder pushed to the Hub gives ``load_dataset("<namespace>/provo_cloze")``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .._io import atomic_folder
from ..errors import InputError
from .provo import load_provo
from .records import RECORD_KEYS
from .splits import split_records

__all__ = ["features", "to_datasetdict", "records_from_dataset", "load_cloze", "load_cloze_dataset", "render_card",
           "build_dataset_folder", "summarize"]

_YAML_FEATURES = [
    {"name": "id", "dtype": "string"},
    {"name": "passage_id", "dtype": "int32"},
    {"name": "word_position", "dtype": "int32"},
    {"name": "context", "dtype": "string"},
    {"name": "corpus_word", "dtype": "string"},
    {"name": "answers", "list": [{"name": "word", "dtype": "string"}, {"name": "count", "dtype": "int32"}]},
    {"name": "num_answers", "dtype": "int32"},
    {"name": "majority", "dtype": "string"},
]


def features():
    """The ``datasets.Features`` of a cloze record (``answers`` as a ``List`` of structs)."""
    from datasets import Features, List, Value  # heavy: datasets; the CLI parser imports varylm_hf.data

    return Features(
        {
            "id": Value("string"),
            "passage_id": Value("int32"),
            "word_position": Value("int32"),
            "context": Value("string"),
            "corpus_word": Value("string"),
            "answers": List({"word": Value("string"), "count": Value("int32")}),
            "num_answers": Value("int32"),
            "majority": Value("string"),
        }
    )


def to_datasetdict(splits: dict[str, list[dict]]):
    """``{"train": records, ...}`` -> ``datasets.DatasetDict`` (empty splits are left out)."""
    from datasets import Dataset, DatasetDict  # heavy: datasets; the CLI parser imports varylm_hf.data

    feats = features()
    return DatasetDict(
        {name: Dataset.from_list([{k: r[k] for k in RECORD_KEYS} for r in recs], features=feats) for name, recs in splits.items() if recs}
    )


def records_from_dataset(dataset) -> list[dict]:
    """A ``datasets.Dataset`` (or a list of records) -> list of record dicts."""
    if isinstance(dataset, list):
        return dataset
    return dataset.to_list()


def load_cloze_dataset(name_or_path: str, revision: str | None = None) -> dict[str, list[dict]]:
    """The splits of a cloze dataset in the Hub layout, read through ``datasets``: ``{split: records}``.

    ``name_or_path``: a folder written by ``varylm data build`` (or ``varylm pull``), or a Hub dataset id such
    as ``varylm/provo_cloze`` (what ``varylm push`` uploads; ``HF_ENDPOINT`` chooses the Hub). A relative
    folder of that name wins over the Hub, as in ``datasets.load_dataset``. Every split must carry the record
    columns (:data:`~varylm_hf.data.records.RECORD_KEYS`).

    Raises:
        InputError: no such folder or repo, or not a cloze dataset (one line, naming it).
    """
    from datasets import load_dataset  # heavy: datasets; the CLI parser imports varylm_hf.data

    where = f"--dataset {name_or_path}"
    if not os.path.isdir(name_or_path) and name_or_path.count("/") != 1:
        raise InputError(f"{where}: no such folder, and not a Hub dataset id of the form namespace/name")
    try:
        dsd = load_dataset(name_or_path, revision=revision)
    except Exception as err:  # noqa: BLE001 - datasets/huggingface_hub raise many kinds; the user gets one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{where}: cannot be read as a dataset ({first[:200]})") from None
    splits = {}
    for split, ds in dsd.items():
        missing = [k for k in RECORD_KEYS if k not in ds.column_names]
        if missing:
            raise InputError(f"{where}: split {split!r} lacks the column(s) {', '.join(missing)} "
                             "(not a cloze dataset of `varylm data build`)")
        splits[split] = records_from_dataset(ds)
    return splits


def load_cloze(dataset: str | None = None, *, records: list[dict] | None = None, split: str = "paper",
               revision: str | None = None, **split_kwargs) -> dict[str, list[dict]]:
    """The splits of a cloze dataset as record lists, always read through a ``datasets.DatasetDict``.

    The one loader of every entry point (training scripts, ``varylm eval run``/``score``/``reproduce``/``demo``):

    * ``dataset``: a folder of ``varylm data build`` or a Hub dataset id (its own splits;
      :func:`load_cloze_dataset`);
    * otherwise ``records`` (default: the packaged Provo norms; a cloze file or the official Provo CSV read by
      ``varylm data build``) split by passage with ``split`` (``"paper"`` or ``"random"``, ``split_kwargs`` to
      :func:`~varylm_hf.data.splits.split_records`), turned into the DatasetDict that ``varylm data build``
      writes (:func:`to_datasetdict`) and read back, so both paths yield the same records.

    >>> splits = load_cloze()
    >>> {name: len(recs) for name, recs in splits.items()}
    {'train': 1892, 'validation': 258, 'test': 536}
    """
    if dataset:
        return load_cloze_dataset(dataset, revision)
    recs = load_provo() if records is None else records
    splits = split_records(recs, split, **split_kwargs)
    dsd = to_datasetdict(splits)
    return {name: records_from_dataset(dsd[name]) if name in dsd else [] for name in splits}  # empty ones kept


def summarize(splits: dict[str, list[dict]]) -> list[dict]:
    """Per-split counts: passages, contexts, answers, mean answers and distinct words per context."""
    rows = []
    for name, recs in splits.items():
        n = len(recs)
        answers = sum(r["num_answers"] for r in recs)
        rows.append(
            {
                "split": name,
                "passages": len({r["passage_id"] for r in recs}),
                "contexts": n,
                "answers": answers,
                "answers_per_context": round(answers / n, 2) if n else 0.0,
                "distinct_per_context": round(sum(len(r["answers"]) for r in recs) / n, 2) if n else 0.0,
            }
        )
    return rows


def _markdown_table(rows: list[dict]) -> str:
    head = "| split | passages | contexts | answers | answers / context | distinct answers / context |\n|---|---:|---:|---:|---:|---:|"
    body = [
        f"| {r['split']} | {r['passages']} | {r['contexts']:,} | {r['answers']:,} | {r['answers_per_context']} | {r['distinct_per_context']} |"
        for r in rows
    ]
    return "\n".join([head, *body])


def render_card(splits: dict[str, list[dict]], *, meta: dict | None = None, num_bytes: dict[str, int] | None = None) -> str:
    """The dataset card for these splits: its YAML header and the values of ``templates/dataset_card.md``.

    ``meta`` may carry ``normalizer`` (dict), ``stats`` (Counter of dropped items), ``source``
    (a sentence), ``pretty_name`` and ``license``. ``num_bytes`` (Arrow bytes per split) is
    computed when not given.
    """
    if num_bytes is None:
        num_bytes = {name: ds.data.nbytes for name, ds in to_datasetdict(splits).items()}
    meta = dict(meta or {})
    stats = Counter(meta.get("stats") or {})
    rows = [r for r in summarize(splits) if r["contexts"]]
    all_recs = [r for recs in splits.values() for r in recs]
    n = len(all_recs)
    total = sum(r["num_answers"] for r in all_recs)
    header = {
        "license": meta.get("license", "cc-by-4.0"),
        "pretty_name": meta.get("pretty_name", "Provo cloze norms"),
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["cloze", "next-word-prediction", "human-label-variation", "psycholinguistics"],
        "size_categories": ["1K<n<10K" if n >= 1000 else "n<1K"],
        "source_datasets": ["original"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": r["split"], "path": f"data/{r['split']}-*.parquet"} for r in rows],
            }
        ],
        "dataset_info": {
            "features": _YAML_FEATURES,
            "splits": [
                {"name": r["split"], "num_bytes": int(num_bytes[r["split"]]), "num_examples": r["contexts"]} for r in rows
            ],
        },
    }
    merged = stats.get("dropped_contexts", 0)
    values = {
        "split_table": _markdown_table(rows),
        "normalizer": str(meta.get("normalizer", {})),
        "merged_note": f"{merged} context and its {stats.get('dropped_answers_merged', 0)} answers removed in this build" if merged else "kept in this build",
        "dropped_answers": f"{stats.get('dropped_answers', 0)}",
        "source": meta.get(
            "source",
            "The norms shipped in `varylm_hf` were recovered from public derived files of the official OSF release "
            "(https://osf.io/sjefs/, `Provo_Corpus-Predictability_Norms.csv`, sha256 965fb72e…4e6489): every response "
            "with its count, checked against two independent copies. `varylm data build --provo-csv FILE` builds the "
            "same dataset from the official file.",
        ),
        "num_contexts": f"{n:,}",
        "num_answers": f"{total:,}",
        "mean_answers": f"{total / n:.2f}" if n else "0",
        "mean_distinct": f"{sum(len(r['answers']) for r in all_recs) / n:.2f}" if n else "0",
    }
    from ..cards import render_dataset_card  # cycle: cards imports data (data.labels, data.words)

    return render_dataset_card(header, **values)


def build_dataset_folder(
    out_dir: str | os.PathLike, splits: dict[str, list[dict]], *, meta: dict | None = None, overwrite: bool = False
) -> Path:
    """Write ``splits`` as a Hub-layout dataset folder at ``out_dir``; returns its path.

    Everything is written to a temporary folder beside ``out_dir`` and moved into place at
    the end, so a failure leaves no half-written folder. An existing non-empty ``out_dir``
    is refused unless ``overwrite=True``, in which case it is replaced only after the new
    folder is complete.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: folder exists and is not empty (pass --overwrite to replace it)")
    if not any(splits.get(name) for name in splits):
        raise InputError("no records to write")
    with atomic_folder(out) as tmp:
        dsd = to_datasetdict(splits)
        (tmp / "data").mkdir()
        for name, ds in dsd.items():
            ds.to_parquet(str(tmp / "data" / f"{name}-00000-of-00001.parquet"))
        sizes = {name: ds.data.nbytes for name, ds in dsd.items()}
        (tmp / "README.md").write_text(render_card(splits, meta=meta, num_bytes=sizes), encoding="utf-8")
    return out

