"""``varylm eval run|compare|gpt2-reference``: TVD of a model against human cloze answers.

Examples::

    varylm eval run --model smollm2-gguf --limit 20 --num-samples 40 --out runs/eval/smollm2
    varylm eval run --model gpt2 --mode both --seeds 42 123 456 --out runs/eval/gpt2
    varylm eval run --model smollm2-gguf --adapter runs/lora --out runs/eval/lora
    varylm eval compare runs/eval/gpt2 runs/eval/gpt2-ft --out runs/eval/compare
    varylm eval gpt2-reference --out runs/eval/gpt2-real   # real GPT-2 samples + the oracle row
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..data import load_cloze
from ..errors import InputError
from ..hub import adapter_base_model
from ..metrics import mean_sd
from ..modeling import load_model_and_tokenizer
from ..options import PROMPT_STYLES, STRATEGIES
from ..prompts import one_shot_example
from ..qa import load_qa_items, qa_hit_rate
from ..reference import reference_gpt2_rows
from ..report import ROWS_FILE, SUMMARY_FILE, _check_out_dir, compare_runs, markdown_table, summarize, write_run
from . import add_model_arguments, check_out_writable, non_negative_int, positive_float, positive_int, top_p
from . import limit as limit_type
from . import seed as seed_type
from .data import add_source_arguments, load_splits


def register(subparsers) -> None:
    """Add ``varylm eval`` and its commands."""
    parser = subparsers.add_parser("eval", help="evaluate next-word distributions against humans (TVD)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="eval_command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="sample and/or score a model on a split; write rows, summary, table, figures")
    add_model_arguments(run, model_help="Hub id, local folder, .gguf file, or smollm2-gguf (offline); "
                        "default with --adapter: the adapter's base model")
    add_source_arguments(run)
    e = run.add_argument_group("evaluation")
    e.add_argument("--task", choices=("cloze", "qa"), default="cloze",
                   help="cloze: TVD against human answers (default); qa: hit rate on the packaged general-knowledge "
                        "items (paper Table 3)")
    e.add_argument("--qa-form", choices=("context", "question"), default="context",
                   help="qa task: next-word form of each item, or the question prompt (default: context)")
    e.add_argument("--subset", choices=("test", "validation", "train"), default="test",
                   help="which part of the split to evaluate (default: test)")
    e.add_argument("--limit", type=limit_type, help="evaluate only the first N contexts (quick runs; 0 or omitted: all)")
    e.add_argument("--mode", choices=("sampled", "exact", "both"), default="sampled",
                   help="sampled TVD (paper), exact TVD from word probabilities, or both (default: sampled)")
    e.add_argument("--seeds", type=seed_type, nargs="+", default=[42], help="sampling/oracle seeds (paper: 42 123 456)")
    e.add_argument("--num-samples", type=positive_int, default=40, help="samples per context (default: 40)")
    e.add_argument("--prompt", choices=PROMPT_STYLES, default="auto",
                   help="plain context, the paper's instruction prompt in the chat template, or the 1-shot prompt "
                        "(default auto: instruction when the tokenizer has a chat template)")
    e.add_argument("--one-shot-seed", type=seed_type, default=None,
                   help="draw the 1-shot example from train with this seed (default: the paper's fixed example, "
                   "'There are now rumblings that' with its human answers)")
    e.add_argument("--batch-size", type=positive_int, default=4, help="contexts per sampling batch (default: 4)")
    e.add_argument("--max-new-tokens", type=positive_int, default=16, help="token budget to complete the first word")
    e.add_argument("--sampler", default="shared-prefix",
                   help="sampling backend, a name in varylm_hf.sampling.SAMPLERS: shared-prefix (default; one prefill "
                        "per context, samples decoded together) or naive (generate per context)")
    e.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature (default 1.0)")
    e.add_argument("--top-k", type=non_negative_int, default=0, help="top-k filter, 0 = off (default: 0, ancestral)")
    e.add_argument("--top-p", type=top_p, default=1.0, help="nucleus filter (default: 1.0, ancestral)")
    e.add_argument("--strategy", choices=STRATEGIES, default="passage",
                   help="word-scoring strategy of exact mode (default: passage, sharing passage prefixes)")
    o = run.add_argument_group("output")
    o.add_argument("--out", required=True, help="output folder (rows, summary.json, table.md, figures)")
    o.add_argument("--name", help="row label in tables and figures (default: the model and adapter)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    o.add_argument("--no-figures", action="store_true", help="skip the figures")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="merge several runs into one table (and comparison figures)")
    cmp_.add_argument("runs", nargs="+", help="run folders (or their summary.json); the first is the baseline")
    cmp_.add_argument("--names", nargs="+", help="labels for the runs, in order")
    cmp_.add_argument("--out", help="folder for table.md, runs.json and figures (default: print the table only)")
    cmp_.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    cmp_.add_argument("--no-figures", action="store_true", help="skip the figures")
    cmp_.set_defaults(func=cmd_compare)

    ref = sub.add_parser("gpt2-reference",
                         help="TVD of the packaged real GPT-2 samples on the paper's test split, with the oracle row")
    ref.add_argument("--seeds", type=seed_type, nargs="+", default=[42, 123, 456], help="oracle seeds (default: 42 123 456)")
    ref.add_argument("--quirks", action="store_true",
                     help="treat samples like the reference code (case-sensitive, failures dropped)")
    ref.add_argument("--out", help="write the run there (rows, summary, table, figures)")
    ref.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ref.add_argument("--no-figures", action="store_true", help="skip the figures")
    ref.set_defaults(func=cmd_gpt2_reference)


def _positive(value, name):
    if value is not None and value < 1:
        raise InputError(f"--{name} must be >= 1, got {value}")


def _check_run(path) -> None:
    """Check a run folder (or its summary.json) for ``eval compare``: one line naming the file and row.

    The summary must be a UTF-8 JSON object with the keys ``varylm eval run`` writes; each row of
    the rows file a JSON object with a ``mode`` and the values the table and figures read.
    """
    p = Path(path)
    folder = p.parent if p.name == SUMMARY_FILE else p
    summary_file, rows_file = folder / SUMMARY_FILE, folder / ROWS_FILE
    if not summary_file.is_file():
        raise InputError(f"{path}: not an evaluation run (no {SUMMARY_FILE})")

    def read_json(text: str, where: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not valid JSON ({err.msg}, line {err.lineno} column {err.colno})") from None

    try:
        text = summary_file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{summary_file}: not UTF-8 text (byte {err.start}); expected the {SUMMARY_FILE} "
                         "of `varylm eval run`") from None
    summary = read_json(text, str(summary_file))
    if not isinstance(summary, dict):
        raise InputError(f"{summary_file}: expected a JSON object (a run summary), got {type(summary).__name__}")
    missing = [k for k in ("name", "n_contexts", "seeds", "oracle") if k not in summary]
    if missing:
        raise InputError(f"{summary_file}: missing key(s) {', '.join(missing)} (not a summary of `varylm eval run`)")
    for key, kind in (("name", str), ("n_contexts", int), ("seeds", list), ("oracle", dict),
                      ("sampled", dict), ("exact", dict)):
        if key in summary and not isinstance(summary[key], kind):
            raise InputError(f"{summary_file}: {key!r} must be a {kind.__name__}, got {type(summary[key]).__name__}")
    if not rows_file.is_file():
        return
    with open(rows_file, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            where = f"{rows_file}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{where}: not UTF-8 text (byte {err.start})") from None
            if not line.strip():
                continue
            row = read_json(line, where)
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
            if row.get("mode") not in ("sampled", "exact"):
                got = f"got {row['mode']!r}" if "mode" in row else "missing"
                raise InputError(f"{where}: 'mode' must be 'sampled' or 'exact' ({got})")
            needed = ["id", "tvd", "oracle_tvd"]
            if row["mode"] == "sampled":
                needed += ["entropy", "human_entropy", "coverage"]
            missing = [k for k in needed if k not in row]
            if missing:
                raise InputError(f"{where}: missing key(s) {', '.join(missing)} (not a row of `varylm eval run`)")


def cmd_run(args) -> int:
    """``varylm eval run``: load the model and data, evaluate, write the run, print the table."""
    from ..evaluation import evaluate_model  # heavy: tqdm; the CLI parser imports this

    check_out_writable(args.out)  # before any compute: a run must not die at its last step
    args.limit = args.limit or None  # 0 means all, as in every command
    _positive(args.num_samples, "num-samples")
    if args.model is None:
        if not args.adapter:
            raise InputError("--model is required (or give --adapter to use the adapter's base model)")
        args.model = adapter_base_model(args.adapter, args.revision)
    if args.task == "qa":
        return _run_qa(args)
    splits, _ = load_splits(args)
    records = splits[args.subset][: args.limit] if args.limit else splits[args.subset]
    if not records:
        raise InputError(f"--subset {args.subset}: no contexts in this split")
    one_shot = None
    if args.prompt == "one_shot":
        one_shot = one_shot_example(splits["train"], seed=args.one_shot_seed)
    # everything about the inputs is checked before the (slow) model load
    from ..sampling import get_sampler  # heavy: torch; the CLI parser imports this

    _check_out_dir(args.out, args.overwrite)
    get_sampler(args.sampler)  # an unknown backend stops here, before the model load
    model, tokenizer = _load(args)
    name = args.name or (f"{args.model} + {args.adapter}" if args.adapter else args.model)
    summary = evaluate_model(
        model, tokenizer, records, mode=args.mode, seeds=args.seeds, num_samples=args.num_samples,
        prompt=args.prompt, one_shot_example=one_shot, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        strategy=args.strategy, sampler=args.sampler, name=name, out_dir=args.out, figures=not args.no_figures,
        overwrite=args.overwrite, progress=not args.quiet,
        config={"model": args.model, "adapter": args.adapter, "gguf_file": args.gguf_file, "revision": args.revision,
                "dataset": getattr(args, "dataset", None), "split": args.split, "subset": args.subset,
                "limit": args.limit},
    )
    print(markdown_table([summary]), end="")
    print(f"wrote {args.out}")
    return 0


def _load(args):
    dtype = None
    if args.dtype:
        import torch  # heavy: torch; the CLI parser imports this

        dtype = getattr(torch, args.dtype)
    return load_model_and_tokenizer(
        args.model, gguf_file=args.gguf_file, adapter=args.adapter, revision=args.revision, dtype=dtype,
        device=args.device, trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
    )


def _run_qa(args) -> int:
    """``varylm eval run --task qa``: hit rate over the QA items, one run per seed."""
    _check_out_dir(args.out, args.overwrite)
    items = load_qa_items()
    items = items[: args.limit] if args.limit else items
    model, tokenizer = _load(args)
    chat = args.prompt in ("instruction", "one_shot") or (args.prompt == "auto" and bool(getattr(tokenizer, "chat_template", None)))
    runs = [qa_hit_rate(model, tokenizer, items, n_samples=args.num_samples, seed=seed, chat=chat, form=args.qa_form,
                        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=not args.quiet)
            for seed in args.seeds]
    mean, sd = mean_sd([r["hit_rate"] for r in runs])
    summary = {"task": "qa", "model": args.model, "adapter": args.adapter, "n_items": len(items), "chat": chat,
               "form": args.qa_form, "num_samples": args.num_samples, "seeds": args.seeds,
               "hit_rate": mean, "hit_rate_sd": sd, "per_seed": [r["hit_rate"] for r in runs]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "qa_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "qa_summary.json")
    with open(out / "qa_items.jsonl", "w", encoding="utf-8") as fh:
        for item in runs[0]["per_item"]:
            fh.write(json.dumps(item) + "\n")
    print(f"| Model | QA hit rate ± SD (↑) |\n|---|---|\n| {args.name or args.model} | {mean:.3f} ± {sd:.3f} |")
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    """``varylm eval compare``: one table for several runs."""
    check_out_writable(args.out)
    for path in args.runs:
        _check_run(path)
    table = compare_runs(args.runs, args.out, names=args.names, figures=not args.no_figures, overwrite=args.overwrite)
    print(table, end="")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_gpt2_reference(args) -> int:
    """``varylm eval gpt2-reference``: the real GPT-2 samples and the oracle on the paper's test split."""
    if args.out:
        check_out_writable(args.out)
        _check_out_dir(args.out, args.overwrite)
    records = load_cloze()["test"]
    rows = reference_gpt2_rows(records, seeds=args.seeds, quirks=args.quirks)
    name = "GPT-2 (real samples" + (", reference quirks)" if args.quirks else ")")
    summary = summarize(rows, name=name, seeds=args.seeds,
                        config={"model": "gpt2", "samples": "packaged gpt2_samples_test (Ilia & Aziz 2024)",
                                "quirks": args.quirks, "split": "paper", "subset": "test"})
    print(markdown_table([summary]), end="")
    if args.out:
        write_run(args.out, rows, summary, figures=not args.no_figures, overwrite=args.overwrite)
        print(f"wrote {args.out}")
    return 0
