"""``varylm score``: per-word surprisal tables for psycholinguists (TSV, one row per context or word).

Examples::

    varylm score --model smollm2-gguf --out scores.tsv                  # Provo test contexts
    varylm score --model smollm2-gguf --answers --passages 6 13 --out answers.tsv
    varylm score --model gpt2 --dataset provo_cloze --split validation --out val.tsv
    varylm score --model gpt2 --text passages.txt --out words.tsv       # running text, one passage a line

Surprisals are in bits. ``surprisal_bits`` is Pimentel & Meister's full word probability (the
``pm`` definition: end-of-word term and division by the probability that a word starts, with the
beginning-of-sentence correction for a text's first word; equal to wordsprobability's corrected
surprisal); ``surprisal_paper_bits`` is the paper's eq. 3 (sum of the word's token log-probs,
wordsprobability's "buggy" column); ``surprisal_eow_bits`` (contexts) is the sampler's outcome
probability that exact TVD uses. See docs/surprisal.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from .. import metrics as M
from ..conditioning import first_token_id
from ..data import load_cloze
from ..data.normalize import Normalizer
from ..distributed import Shard
from ..errors import InputError
from ..options import BOUNDARIES, STRATEGIES
from . import add_model_arguments, positive_int
from . import limit as limit_type
from .eval import _load as load_from_args  # one reading of --model/--adapter/--dtype/--device

SPLITS = ("test", "validation", "train", "all")
#: Columns of ``varylm score --dataset`` (context rows; ``--answers`` adds rows of kind ``answer``).
DATASET_COLUMNS = ("kind", "id", "passage_id", "word_position", "corpus_word", "answer", "count", "num_answers",
                   "p_human", "surprisal_bits", "surprisal_eow_bits", "surprisal_paper_bits", "model_human_mass",
                   "exact_tvd", "human_entropy")


def register(subparsers) -> None:
    """Add ``varylm score``."""
    p = subparsers.add_parser("score", help="per-word surprisal tables (cloze contexts or running text) as TSV",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, required=True)
    src = p.add_argument_group("input (default: the packaged Provo norms, test split)")
    src.add_argument("--text", metavar="FILE", help="running text, one passage per line: one row per word")
    src.add_argument("--dataset", metavar="DIR_OR_ID",
                     help="a folder of `varylm data build` or a Hub dataset id (default: packaged Provo)")
    src.add_argument("--split", choices=SPLITS, default="test", help="which split of the dataset (default: test)")
    src.add_argument("--passages", type=int, nargs="+", metavar="ID", help="only these passage ids")
    src.add_argument("--limit", type=limit_type, help="only the first N contexts / texts (0 or omitted: all)")
    src.add_argument("--answers", action="store_true", help="also one row per (context, human answer)")
    s = p.add_argument_group("scoring")
    s.add_argument("--bos", default="auto", help="first token of every context/text: auto (document separator), "
                   "none, or a token (default: auto)")
    s.add_argument("--boundary", choices=BOUNDARIES, default="pm",
                   help="word boundary of the corrected surprisal: pm (wordsprobability's, default) or wordrule "
                        "(the sampler's word rule)")
    s.add_argument("--strategy", choices=STRATEGIES, default="passage",
                   help="word-scoring strategy for --dataset (default: passage, sharing passage prefixes)")
    s.add_argument("--batch-size", type=positive_int, default=128, help="contexts per forward for --dataset (default 128)")
    s.add_argument("--window", type=positive_int, help="running text: tokens per forward (default: the model's limit)")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="the TSV file to write")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_score)


# --------------------------------------------------------------------------- helpers


def _check_out(path: str, overwrite: bool) -> None:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"--out {path}: is a folder (give a .tsv file name)")
    if p.exists() and not overwrite:
        raise InputError(f"--out {path}: exists (pass --overwrite to replace it)")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--out {path}: folder {folder} is not writable")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6f}"
    return str(value).replace("\t", " ").replace("\n", " ")


def write_tsv(path, columns, rows) -> None:
    """Write ``rows`` (dicts) as a TSV with a header, atomically (a temp file beside it, then ``os.replace``)."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent) if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write("\t".join(columns) + "\n")
            for r in rows:
                f.write("\t".join(_fmt(r.get(c)) for c in columns) + "\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _load(args):
    return load_from_args(args)


def load_records(dataset: str | None, split: str) -> list[dict]:
    """Cloze records of ``split`` from a ``varylm data build`` folder, or from the packaged Provo (paper split)."""
    splits = load_cloze(dataset)
    if split == "all":
        return [r for name in ("train", "validation", "test") for r in splits.get(name, [])]
    if split not in splits or not splits[split]:
        raise InputError(f"--split {split}: the dataset has no such split (has: {', '.join(sorted(splits))})")
    return list(splits[split])


# --------------------------------------------------------------------------- the two modes


def score_dataset(model, tokenizer, records, *, answers: bool = False, bos="auto", boundary: str = "pm",
                  strategy: str = "passage", batch_size: int = 128, progress: bool = False) -> list[dict]:
    """Rows of ``varylm score --dataset`` (:data:`DATASET_COLUMNS`) for cloze ``records``.

    Per context: the corpus word as written in the passage is scored under ``pm`` (``surprisal_bits``) and
    ``paper``; ``surprisal_eow_bits`` and ``p_human`` are those of its normalised form (the outcome humans and
    the sampler produce; ``eow`` summed over the surface forms, as exact TVD does). ``model_human_mass`` is
    ``sum_{w in H} q_eow(w)``, ``exact_tvd`` and ``human_entropy`` (bits) as in ``varylm eval run --mode exact``.
    """
    from ..evaluation import _passage_runs, exact_word_probs  # heavy: tqdm; the CLI parser imports this
    from ..scoring import word_logprobs  # heavy: torch; the CLI parser imports this

    norm = Normalizer()
    corpus = [(r.get("corpus_word") or "").strip() for r in records]
    corpus_norm = [norm(w) if w else "" for w in corpus]
    # exact q (eow, surface forms) of every human word, plus the normalised corpus word
    ext = []
    for r, cn in zip(records, corpus_norm):
        ans = list(r["answers"])
        if cn and cn not in {a["word"] for a in ans}:
            ans = ans + [{"word": cn, "count": 0}]
        ext.append({**r, "answers": ans})
    qs = exact_word_probs(model, tokenizer, ext, prompt="plain", strategy=strategy, batch_size=batch_size,
                          progress=progress, bos=bos)
    # paper and pm of the corpus word as written (and of each human answer as spelled)
    words = [([c] if c else []) + ([a["word"] for a in r["answers"]] if answers else []) for r, c in zip(records, corpus)]
    contexts = [r["context"] for r in records]
    kw = {"strategy": strategy, "batch_size": batch_size, "progress": False, "bos": bos}
    paper, pm = [], []
    # one call per passage, as exact_word_probs: the floats do not depend on the other contexts scored along
    # (one process or a shard of several write the same table)
    for start, stop in _passage_runs(records):
        paper.extend(word_logprobs(model, tokenizer, contexts[start:stop], words[start:stop], definition="paper", **kw))
        pm.extend(word_logprobs(model, tokenizer, contexts[start:stop], words[start:stop], definition="pm",
                                boundary=boundary, **kw))

    def bits(lp):
        return -lp / math.log(2) if lp is not None and lp > -math.inf else math.inf

    def bits_q(q):
        return -math.log2(q) if q > 0 else math.inf

    rows = []
    for r, c, cn, q, lp_paper, lp_pm in zip(records, corpus, corpus_norm, qs, paper, pm):
        human = r["answers"]
        n = r["num_answers"]
        counts = {a["word"]: a["count"] for a in human}
        qh = {a["word"]: q.get(a["word"], 0.0) for a in human}
        k = 1 if c else 0
        row = {"kind": "context", "id": r.get("id"), "passage_id": r.get("passage_id"),
               "word_position": r.get("word_position"), "corpus_word": c, "answer": None,
               "count": counts.get(cn, 0) if c else None, "num_answers": n,
               "p_human": counts.get(cn, 0) / n if c else None,
               "surprisal_bits": bits(lp_pm[0]) if c else None,
               "surprisal_eow_bits": bits_q(q.get(cn, 0.0)) if c else None,
               "surprisal_paper_bits": bits(lp_paper[0]) if c else None,
               "model_human_mass": sum(qh.values()),
               "exact_tvd": M.exact_tvd(human, qh, tolerance=1e-4),
               "human_entropy": M.entropy(human)}
        rows.append(row)
        if answers:
            for j, a in enumerate(human):
                rows.append({"kind": "answer", "id": r.get("id"), "passage_id": r.get("passage_id"),
                             "word_position": r.get("word_position"), "corpus_word": c, "answer": a["word"],
                             "count": a["count"], "num_answers": n, "p_human": a["count"] / n,
                             "surprisal_bits": bits(lp_pm[k + j]), "surprisal_eow_bits": bits_q(qh[a["word"]]),
                             "surprisal_paper_bits": bits(lp_paper[k + j])})
    return rows


def cmd_score(args) -> int:
    """``varylm score``: check the inputs, load the model, score, write the TSV atomically."""
    _check_out(args.out, args.overwrite)
    if args.text and args.dataset:
        raise InputError("give either --text (running text) or --dataset (cloze contexts), not both")
    if args.text and args.answers:
        raise InputError("--answers needs cloze contexts (--dataset or the packaged Provo), not --text")
    limit = args.limit or None
    shard = Shard.current()  # under torchrun / accelerate launch: this process's part; rows gathered on the main
    if args.text:
        from ..surprisal import TEXT_COLUMNS, read_texts, text_surprisals  # heavy: torch; the CLI parser imports this

        texts = read_texts(args.text)
        texts = texts[:limit] if limit else texts
        model, tokenizer = _load(args)
        first_token_id(tokenizer, args.bos)  # a bad --bos stops here, before any compute
        t0 = time.perf_counter()
        # several processes: texts dealt round-robin (an empty text keeps its text_id and yields no rows)
        mine = [t if i % shard.world == shard.rank else "" for i, t in enumerate(texts)]
        rows = text_surprisals(model, tokenizer, mine, bos=args.bos, boundary=args.boundary, window=args.window,
                               progress=not args.quiet and len(texts) > 1 and shard.is_main)
        rows = shard.gather_sorted(rows, key=lambda r: (r["text_id"], r["word_index"]))
        dt = time.perf_counter() - t0
        if shard.is_main:
            write_tsv(args.out, TEXT_COLUMNS, rows)
        what = f"{len(rows):,} words of {sum(1 for t in texts if t):,} texts"
        corr = [r["surprisal_bits"] for r in rows]
        unc = [r["surprisal_paper_bits"] for r in rows]
    else:
        records = load_records(args.dataset, args.split)
        if args.passages:
            wanted = set(args.passages)
            records = [r for r in records if r.get("passage_id") in wanted]
            if not records:
                raise InputError(f"--passages {' '.join(map(str, args.passages))}: no such passage in --split {args.split}")
        records = records[:limit] if limit else records
        if not records:
            raise InputError("no contexts to score")
        for i, r in enumerate(records):
            if not r.get("answers") or not r.get("num_answers"):
                raise InputError(f"record {r.get('id', i)}: no human answers")
        model, tokenizer = _load(args)
        first_token_id(tokenizer, args.bos)
        t0 = time.perf_counter()
        order = {str(r.get("id", i)): i for i, r in enumerate(records)}
        rows = score_dataset(model, tokenizer, shard.mine(records), answers=args.answers, bos=args.bos,
                             boundary=args.boundary, strategy=args.strategy, batch_size=args.batch_size,
                             progress=not args.quiet and shard.is_main)
        for k, r in enumerate(rows):  # a record's context row, then its answers, in one-process order
            r["_order"] = (order[str(r["id"])], k)
        rows = shard.gather_sorted(rows, key=lambda r: r["_order"])
        dt = time.perf_counter() - t0
        if shard.is_main:
            write_tsv(args.out, DATASET_COLUMNS, rows)
        n_ans = sum(1 for r in rows if r["kind"] == "answer")
        what = f"{len(records):,} contexts" + (f" and {n_ans:,} (context, answer) rows" if args.answers else "")
        ctx = [r for r in rows if r["kind"] == "context" and r["surprisal_bits"] is not None]
        corr = [r["surprisal_bits"] for r in ctx]
        unc = [r["surprisal_paper_bits"] for r in ctx]
    shard.barrier()
    if not shard.is_main:
        return 0
    finite = [(a, b) for a, b in zip(corr, unc) if math.isfinite(a) and math.isfinite(b)]
    mean = (sum(a for a, _ in finite) / len(finite), sum(b for _, b in finite) / len(finite)) if finite else (math.nan,) * 2
    print(f"wrote {args.out}: {what} in {dt:.1f} s; mean surprisal {mean[0]:.3f} bits "
          f"(uncorrected {mean[1]:.3f})", file=sys.stdout)
    return 0
