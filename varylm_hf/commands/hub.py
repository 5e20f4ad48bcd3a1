"""``varylm push`` and ``varylm pull``: share models, adapters, the dataset and the metric on the Hub.

The endpoint comes from ``HF_ENDPOINT`` (default https://huggingface.co) and the token from ``HF_TOKEN``
or ``hf auth login``; there is deliberately no ``--token`` option (it would end up in shell history).
Pickles are refused unless ``--allow-pickle``; ``checkpoint-*`` folders are left out unless
``--include-checkpoints`` (see :mod:`varylm_hf.hub`).
"""

from __future__ import annotations

import argparse

from ..hub import pull, push

_PUSH_EPILOG = """\
examples:
  varylm push runs/gpt2-var/checkpoint-final  me/gpt2-provo-var
  varylm push runs/mistral-lora  me/mistral-provo-lora --base-model mistralai/Mistral-7B-Instruct-v0.3
  varylm push provo_cloze  me/provo_cloze
  varylm push metrics/tvd  me/tvd
The model card is rendered from varylm_run.json and eval_summary.json in the folder (see docs/hub.md)."""


def register(subparsers) -> None:
    """Add the ``push`` and ``pull`` subcommands."""
    push = subparsers.add_parser(
        "push",
        help="upload a model, adapter, dataset or metric folder to the Hub",
        description="Upload a folder to the Hugging Face Hub in one commit (local files are never modified).",
        epilog=_PUSH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument("folder", help="checkpoint, adapter, dataset or metric folder")
    push.add_argument("repo_id", help="target repo, namespace/name")
    push.add_argument("--kind", choices=("auto", "model", "adapter", "dataset", "metric"), default="auto",
                      help="what the folder holds (default: detected from its files)")
    push.add_argument("--base-model", metavar="HUB_ID",
                      help="Hub id of the base model (adapters whose adapter_config.json records a local path)")
    push.add_argument("--run-config", metavar="FILE", help="run description (default: FOLDER/varylm_run.json)")
    push.add_argument("--eval-summary", metavar="FILE",
                      help="evaluation summary with mean_tvd, oracle_tvd (default: FOLDER/eval_summary.json)")
    push.add_argument("--no-card", action="store_true", help="upload the folder's own README.md instead of a generated card")
    push.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    push.add_argument("--message", metavar="TEXT", help="commit message")
    push.add_argument("--allow-pickle", action="store_true",
                      help="also upload pickle files (.bin, .pt, .pth, .pkl, .pickle, .ckpt); refused by default, "
                      "since loading a pickle can run code")
    push.add_argument("--include-checkpoints", action="store_true",
                      help="also upload trainer checkpoint folders (checkpoint-*), left out by default")
    push.set_defaults(func=run_push)

    pull = subparsers.add_parser(
        "pull",
        help="download a repo (model, adapter, dataset or metric) and print its local folder",
        description="Download a Hub repo at a revision; prints the local folder.",
    )
    pull.add_argument("repo_id", help="namespace/name")
    pull.add_argument("--revision", default=None, help="branch, tag or commit id (default: main)")
    pull.add_argument("--repo-type", choices=("model", "dataset", "space"), default="model",
                      help="model (also adapters), dataset, or space (metrics); default: model")
    pull.add_argument("--local-dir", metavar="DIR", default=None,
                      help="copy the files into DIR (default: the Hugging Face cache)")
    pull.set_defaults(func=run_pull)


def run_push(args) -> int:
    """``varylm push FOLDER REPO_ID``."""
    kwargs = {"private": args.private, "commit_message": args.message, "allow_pickle": args.allow_pickle,
              "include_checkpoints": args.include_checkpoints}
    if args.kind in ("auto", "model", "adapter"):
        kwargs.update(base_model=args.base_model, run_config=args.run_config, eval_summary=args.eval_summary,
                      card=not args.no_card)
    result = push(args.folder, args.repo_id, kind=args.kind, **kwargs)
    print(f"pushed {args.folder} -> {result.url} ({result.repo_type} repo, commit {result.commit[:12]}, "
          f"{len(result.files)} files)")
    if result.skipped:
        shown = ", ".join(result.skipped[:3]) + (f" and {len(result.skipped) - 3} more" if len(result.skipped) > 3 else "")
        print(f"left out {len(result.skipped)} files that are not model/dataset/metric files or are trainer "
              f"checkpoints: {shown}")
    return 0


def run_pull(args) -> int:
    """``varylm pull REPO_ID``."""
    path = pull(args.repo_id, revision=args.revision, repo_type=args.repo_type, local_dir=args.local_dir)
    print(path)
    return 0
