"""``varylm data build|summary``: the cloze dataset in the Hub layout."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from ..data import RECORD_KEYS, Normalizer, build_dataset_folder, load_cloze, load_cloze_file, load_provo, summarize
from ..errors import InputError
from . import check_out_writable
from . import seed as seed_type

DEFAULT_OUT = "provo_cloze"


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose and read the cloze norms (shared by every command that loads data)."""
    src = parser.add_argument_group("data source (default: the Provo norms shipped in the package)")
    src.add_argument("--dataset", metavar="DIR_OR_ID",
                     help="a cloze dataset in the Hub layout: a folder of `varylm data build` or a Hub id such as "
                     "varylm/provo_cloze (its own splits are used)")
    src.add_argument("--provo-csv", metavar="FILE", help="the official Provo_Corpus-Predictability_Norms.csv")
    src.add_argument("--download", action="store_true", help="download the official Provo CSV from OSF (sha256-checked)")
    src.add_argument("--cloze-file", metavar="FILE", help="your own norms: .tsv/.csv/.jsonl with context, answer, count columns")
    src.add_argument("--context-column", default="context", help="column of the context text (cloze file; default: context)")
    src.add_argument("--answer-column", default="answer", help="column of the human answer (cloze file; default: answer)")
    src.add_argument("--count-column", default="count", help="column of the answer count, optional in the file (default: count)")
    src.add_argument("--passage-column", default="passage", help="column of the passage id, optional (default: passage)")
    src.add_argument("--encoding", default=None, help="file encoding (default: cp1252 for the Provo CSV, utf-8 otherwise)")
    src.add_argument("--sha256", default=None, help="expected sha256 of --provo-csv")
    src.add_argument("--merged-context", choices=("drop", "keep"), default="drop",
                     help="Provo passage 18 word 3 holds the answers of two contexts: drop it (default) or keep it as the paper did")
    norm = parser.add_argument_group("normalisation of answers")
    norm.add_argument("--keep-case", action="store_true", help="do not lower-case answers")
    norm.add_argument("--keep-punctuation", action="store_true", help="do not strip punctuation from the edges of answers")
    spl = parser.add_argument_group("split (by passage)")
    spl.add_argument("--split", choices=("paper", "random"), default="paper", help="the paper's passage ids (default) or a seeded random split")
    spl.add_argument("--test-size", type=float, default=0.2, help="fraction of passages for test (random split; default 0.2)")
    spl.add_argument("--validation-size", type=float, default=0.1, help="fraction of the remaining passages for validation (default 0.1)")
    spl.add_argument("--seed", type=seed_type, default=42, help="seed of the random split, 0 to 2**32-1 (default 42)")


def load_splits(args) -> tuple[dict[str, list[dict]], dict]:
    """Load the records chosen by :func:`add_source_arguments` and split them; returns ``(splits, meta)``."""
    normalizer = Normalizer(lowercase=not args.keep_case, strip_punctuation=not args.keep_punctuation)
    stats: Counter = Counter()
    if getattr(args, "dataset", None):
        if args.cloze_file or args.provo_csv or args.download:
            raise InputError("give either --dataset or --cloze-file/--provo-csv/--download, not both")
        return load_cloze(args.dataset), {"normalizer": normalizer.to_dict(), "stats": stats,
                                          "source": f"The dataset `{args.dataset}`."}
    if args.cloze_file and (args.provo_csv or args.download):
        raise InputError("give either --cloze-file or --provo-csv/--download, not both")
    if args.cloze_file:
        records = load_cloze_file(
            args.cloze_file,
            context_column=args.context_column,
            answer_column=args.answer_column,
            count_column=args.count_column,
            passage_column=args.passage_column,
            encoding=args.encoding or "utf-8",
            normalizer=normalizer,
            stats=stats,
        )
        source = f"Built from `{args.cloze_file}` with `varylm data build --cloze-file`."
        split = "random" if args.split == "paper" else args.split
    else:
        records = load_provo(
            args.provo_csv,
            download=args.download,
            encoding=args.encoding or "cp1252",
            sha256=args.sha256,
            normalizer=normalizer,
            merged_context=args.merged_context,
            stats=stats,
        )
        source = None
        split = args.split
    splits = load_cloze(records=records, split=split, test_size=args.test_size, validation_size=args.validation_size,
                        seed=args.seed)  # the DatasetDict that `data build` writes, read back
    meta = {"normalizer": normalizer.to_dict(), "stats": stats}
    if source:
        meta.update(source=source, pretty_name="Cloze norms", license="other")
    return splits, meta


def _print_summary(splits: dict[str, list[dict]]) -> None:
    cols = ["split", "passages", "contexts", "answers", "answers_per_context", "distinct_per_context"]
    rows = summarize(splits)
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))


def cmd_build(args) -> int:
    """Write the dataset folder and print its summary."""
    check_out_writable(args.out)  # before reading anything
    splits, meta = load_splits(args)
    out = build_dataset_folder(args.out, splits, meta=meta, overwrite=args.overwrite)
    _print_summary(splits)
    print(f"wrote {out}/ (load it with datasets.load_dataset({str(out)!r}))")
    return 0


def _check_dataset_folder(folder) -> None:
    """A folder written by ``varylm data build``: readable ``data/*.parquet`` files holding cloze records."""
    import pyarrow.parquet as pq  # heavy: pyarrow; the CLI parser imports this

    files = sorted(Path(folder).glob("data/*.parquet"))
    if not files:
        raise InputError(f"{folder}: not a varylm dataset folder (no data/*.parquet; `varylm data build --out DIR` "
                         "writes one)")
    for f in files:
        try:
            names = pq.read_schema(f).names
            pq.read_table(f)
        except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{f}: not a readable parquet file ({first})") from None
        missing = [k for k in RECORD_KEYS if k not in names]
        if missing:
            raise InputError(f"{f}: missing column(s) {', '.join(missing)} (not a cloze dataset of `varylm data build`)")


def cmd_summary(args) -> int:
    """Print counts per split of a dataset folder, or of the chosen source."""
    if args.dir:
        from datasets import load_dataset  # heavy: datasets; the CLI parser imports this

        if not os.path.isdir(args.dir):
            raise InputError(f"{args.dir}: no such dataset folder (build one with `varylm data build --out {args.dir}`)")
        _check_dataset_folder(args.dir)
        try:
            dsd = load_dataset(args.dir)
        except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user gets one line
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{args.dir}: cannot be read as a dataset ({first})") from None
        splits = {name: ds.to_list() for name, ds in dsd.items()}
    else:
        splits, _ = load_splits(args)
    _print_summary(splits)
    return 0


def register(subparsers) -> None:
    """Add the ``data`` command group."""
    data = subparsers.add_parser("data", help="build and inspect cloze datasets", description="Build and inspect cloze datasets.")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    sub.required = True
    build = sub.add_parser("build", help="write a dataset folder that datasets.load_dataset reads (Hub layout)",
                           description="Write the cloze norms as a Hub-layout dataset folder (parquet per split + card).")
    build.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT}, so load_dataset('{DEFAULT_OUT}') finds it)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    add_source_arguments(build)
    build.set_defaults(func=cmd_build)
    summary = sub.add_parser("summary", help="print counts per split", description="Print counts per split of a dataset folder or source.")
    summary.add_argument("dir", nargs="?", help="a dataset folder built by `varylm data build` (default: the chosen source)")
    add_source_arguments(summary)
    summary.set_defaults(func=cmd_summary)
