"""Teach an instruction-tuned LM human next-word variability by answer-augmented SFT (paper §3.2).

Paper run (Mistral-7B-Instruct-v0.3, QLoRA, lr 1e-4, batch 32 rows, 4 epochs, seed 42; one GPU):

    python examples/train_instruct.py

Offline CPU run on the SmolLM2-135M-Instruct GGUF with plain LoRA and the fast path
(one row per context instead of one per answer; 40 contexts, ~1 min on 2 cores):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe var --limit_contexts 40 --num_train_epochs 1 --output_dir runs/instruct-smollm2

``--batch_size`` counts augmented (prompt, answer) rows in both recipes (default 32, the paper's); ``var``
takes whole contexts, round(rows / answers per context) of them per step (one Provo context for 32 rows).
``--group_by_passage`` (``var``) batches contexts of one passage, whose prompts then share the passage text in
one token trie: with ``--batch_size 256`` (~6 contexts per step) one epoch of all 1,892 training contexts
takes about half the time of one context per step (docs/benchmarks.md).

The same with TRL's SFTTrainer on the augmented rows (~40 rows per context; slower):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe sft --limit_contexts 8 --max_steps 10 --batch_size 8 --per_device_batch_size 8

QLoRA is the default wherever bitsandbytes imports (CUDA: bf16 compute; CPU: float32 compute, ~60 s per
context step for SmolLM2 on 2 cores, see docs/qlora.md); without it the script says so and trains LoRA.

Resume after a crash or kill -9: run with ``--save_steps N`` (a checkpoint every N steps in
``--output_dir``), then repeat the command with ``--resume_from_checkpoint last`` (the newest complete
checkpoint) or ``--resume_from_checkpoint DIR/checkpoint-N``.

Bad arguments (a batch size of 0, ``--learning_rate nan``, ``--limit_contexts -1``, an ``--output_dir``
that is a file, a missing model folder...) stop before anything is loaded or created: one line on
stderr (``error: ...``), exit status 2.

``--push_to_hub --hub_model_id NAME`` pushes the adapter, its card and ``varylm_run.json`` in one commit after
training, as ``varylm push OUTPUT_DIR REPO_ID`` does (the base model named by its Hub id: a local
``--model_name_or_path`` needs ``--base_model_id``; the token is checked before anything is loaded).

The adapter folder holds a PEFT model card and ``varylm_run.json``; load it with
``PeftModel.from_pretrained(base, folder)`` or ``AutoPeftModelForCausalLM.from_pretrained(folder)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

from varylm_hf.errors import InputError, VarylmError
from varylm_hf.modeling import OFFLINE_MODEL
from varylm_hf.options import RECIPES
from varylm_hf.run_folders import check_output_dir, checkpoint_step, remove_empty_tree, resolve_resume
from varylm_hf.training.instruct import InstructConfig
from varylm_hf.training.rows import LABEL_MODES

# bitsandbytes warns on every start on CPUs with AVX512-BF16 that an optional kernel package is missing;
# that line is noise here and would make a one-line error two lines.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "gemm_4bit_forward from kernels-community" not in record.getMessage())

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"


class UsageError(Exception):
    """A command-line error (printed as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message (two lines); raise instead: one line
        raise UsageError(message)


def make_parser() -> argparse.ArgumentParser:
    """Command-line options; defaults reproduce the paper's Mistral run."""
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name_or_path", default=PAPER_MODEL, help="Hub id, folder, .gguf file or 'smollm2-gguf'")
    p.add_argument("--qlora", action=argparse.BooleanOptionalAction, default=True,
                   help="4-bit nf4 QLoRA (default; falls back to LoRA without bitsandbytes)")
    p.add_argument("--recipe", choices=RECIPES, default="sft",
                   help="sft: TRL SFTTrainer on augmented rows; var: same objective, one row per context")
    p.add_argument("--label_mode", default="all",
                   help=f"which human answers become completions: {', '.join(LABEL_MODES)} (default: all; checked "
                        "against varylm_hf.data.LABEL_MODES, so a view registered before the script runs counts)")
    p.add_argument("--dataset", default=None, help="a cloze dataset in the Hub layout: a folder of `varylm data build` "
                   "or a Hub id (default: the Provo norms shipped in varylm-hf)")
    p.add_argument("--split", default="paper", help="passage split of the packaged Provo data (default: the paper's)")
    p.add_argument("--limit_contexts", type=int, default=None,
                   help="train on N random training contexts (quick runs); 0 or unset: all; negative: an error")
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                   help="eval loss on the validation split each epoch (limited like the training data)")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--batch_size", type=int, default=None,
                   help="augmented (prompt, answer) rows per optimizer step, both recipes (default 32, the paper's); "
                        "var takes whole contexts: round(rows / answers per context), at least one")
    p.add_argument("--per_device_batch_size", type=int, default=None,
                   help="rows per micro-batch (default: 8 on GPU / 4 on CPU for sft, the whole step for var); "
                        "the rest is gradient accumulation")
    p.add_argument("--group_by_passage", action="store_true",
                   help="var only: batch contexts of one passage together (shuffled per epoch) so that their "
                        "prompts share the passage text in one token trie (the speed option)")
    p.add_argument("--num_train_epochs", type=float, default=4)
    p.add_argument("--max_steps", type=int, default=-1, help="stop after N optimizer steps (-1: train by epochs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--save_steps", type=int, default=0,
                   help="write a resumable checkpoint-N to --output_dir every N steps (default 0: none)")
    p.add_argument("--resume_from_checkpoint", default=None,
                   help="continue from this checkpoint folder, or 'last' (also 'true'): the newest complete "
                        "checkpoint-N in --output_dir (an error when there is none)")
    p.add_argument("--output_dir", default=None, help="default: runs/instruct-<recipe>-<label_mode>")
    p.add_argument("--push_to_hub", action="store_true",
                   help="push the adapter, its card and varylm_run.json to --hub_model_id after training, as "
                        "`varylm push OUTPUT_DIR REPO_ID` does (one commit; the token from --hub_token, HF_TOKEN or "
                        "`hf auth login`, never written to a file)")
    p.add_argument("--hub_model_id", default=None,
                   help="repo of --push_to_hub: NAME (your namespace) or NAMESPACE/NAME (default: the --output_dir name)")
    p.add_argument("--hub_token", default=None, help="Hub token for --push_to_hub (default: HF_TOKEN / hf auth login)")
    p.add_argument("--hub_private_repo", action="store_true", help="create the --push_to_hub repo as private")
    p.add_argument("--report_to", nargs="+", default=["none"],
                   help="TrainingArguments.report_to: none (default), tensorboard, wandb, all...")
    p.add_argument("--base_model_id", default=None, help="Hub id recorded as the adapter's base model")
    return p


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# --------------------------------------------------------------------------- checks (before anything is loaded)

def check_model_source(name: str) -> None:
    """A local path must exist (a missing one would otherwise be reported as a bad Hub repo id)."""
    if name == OFFLINE_MODEL:
        return
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            raise InputError(f"--model_name_or_path {name}: folder has no config.json (not a transformers model)")
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf") or "\\" in name:
        raise InputError(f"--model_name_or_path {name}: no such file or folder")


def check_arguments(args: argparse.Namespace) -> Path | None:
    """Validate the options (fills in the default --output_dir and resolves --resume_from_checkpoint);
    returns the folder that training will create (see :func:`check_output_dir`)."""
    if args.limit_contexts is not None and args.limit_contexts < 0:
        raise InputError(f"--limit_contexts {args.limit_contexts}: must be >= 0 (0 means all contexts)")
    if not 0 <= args.seed < 2**32:
        raise InputError(f"--seed {args.seed}: must be an integer in [0, 2**32 - 1]")
    if args.max_steps == 0 or args.max_steps < -1:
        raise InputError(f"--max_steps {args.max_steps}: must be >= 1, or -1 to train by epochs")
    InstructConfig(recipe=args.recipe, label_mode=args.label_mode, learning_rate=args.learning_rate,
                   batch_size=args.batch_size, per_device_batch_size=args.per_device_batch_size,
                   num_train_epochs=args.num_train_epochs, max_steps=args.max_steps,
                   logging_steps=args.logging_steps, save_steps=args.save_steps,
                   group_by_passage=args.group_by_passage).check()  # batch sizes too (sft.batch_rows)
    check_model_source(args.model_name_or_path)
    if args.push_to_hub:
        check_push_arguments(args)
    args.output_dir = args.output_dir or f"runs/instruct-{args.recipe}-{args.label_mode}"
    created = check_output_dir(args.output_dir)
    args.resume_from_checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    return created


def check_push_arguments(args: argparse.Namespace) -> None:
    """What ``--push_to_hub`` needs, checked offline before anything is loaded (the token is checked in _train)."""
    from varylm_hf.cards import check_hub_id

    if args.hub_model_id:
        name = args.hub_model_id
        check_hub_id(name if "/" in name else f"namespace/{name}", "--hub_model_id")
    if args.base_model_id:
        check_hub_id(args.base_model_id, "--base_model_id")
    local = args.model_name_or_path != OFFLINE_MODEL and Path(args.model_name_or_path).expanduser().exists()
    if local and not args.base_model_id:
        raise InputError(f"--model_name_or_path {args.model_name_or_path}: --push_to_hub names the adapter's base "
                         "model by its Hub id; a local folder needs --base_model_id NAMESPACE/NAME")


def _dataset_name(dataset: str | None) -> str:
    """How the run file and card name the training data: a Hub id as it is, a local folder by its name only (a
    path is not a Hub dataset), the packaged norms as ``provo``."""
    if not dataset:
        return "provo"
    path = Path(dataset).expanduser()
    return f"local folder {path.name}" if path.exists() else dataset


def _subset(records, n, seed):
    if not n or n >= len(records):  # None or 0: all
        return records
    if n < 0:
        raise InputError(f"--limit_contexts {n}: must be >= 0 (0 means all contexts)")
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in picked]


def _model_flag(err: InputError) -> InputError:
    """The library names its own flag (--model); this script's flag is --model_name_or_path."""
    message = str(err)
    if message.startswith("--model "):
        return InputError("--model_name_or_path " + message[len("--model "):])
    return err


# --------------------------------------------------------------------------- training


def main(argv=None) -> int:
    """Parse and check arguments, load data and model, train (resuming when asked), save; returns the exit
    status. A run that fails before writing anything leaves no folder behind."""
    args = make_parser().parse_args(argv)
    created = check_arguments(args)
    try:
        return _train(args)
    except BaseException:
        remove_empty_tree(created)
        raise


def _train(args: argparse.Namespace) -> int:
    import torch
    from transformers import set_seed

    from varylm_hf.data import load_cloze
    from varylm_hf.modeling import OFFLINE_MODEL_HUB_ID, load_model_and_tokenizer
    from varylm_hf.training.adapters import load_qlora_model, qlora_available
    from varylm_hf.training.instruct import train_instruct

    set_seed(args.seed)
    repo_id = None
    if args.push_to_hub:  # a missing or refused token fails now, before the data and the model are loaded
        from varylm_hf.hub import resolve_repo_id

        repo_id = resolve_repo_id(args.hub_model_id or Path(args.output_dir).absolute().name, token=args.hub_token)
    splits = load_cloze(args.dataset, split=args.split)
    train = _subset(splits["train"], args.limit_contexts, args.seed)
    evals = _subset(splits["validation"], args.limit_contexts, args.seed) if args.eval else None

    qlora = args.qlora
    if qlora:
        qlora, reason = qlora_available()
        if not qlora:
            print(f"QLoRA unavailable ({reason}): training plain LoRA on the full-precision model", file=sys.stderr)
    try:
        if qlora:  # 4-bit nf4; bf16 compute on CUDA, float32 on CPU; GGUF files are dequantised first
            model, tokenizer = load_qlora_model(args.model_name_or_path)
        else:
            model, tokenizer = load_model_and_tokenizer(args.model_name_or_path)
    except InputError as err:
        raise _model_flag(err) from err
    if args.model_name_or_path == OFFLINE_MODEL:
        base_id = args.base_model_id or OFFLINE_MODEL_HUB_ID
    else:
        base_id = args.base_model_id or args.model_name_or_path
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--model_name_or_path {args.model_name_or_path}: tokenizer has no chat template "
                         "(the instruction recipe needs an instruction-tuned model)")
    config = InstructConfig(
        output_dir=args.output_dir,
        recipe=args.recipe, label_mode=args.label_mode, qlora=qlora,
        learning_rate=args.learning_rate, batch_size=args.batch_size, per_device_batch_size=args.per_device_batch_size,
        num_train_epochs=args.num_train_epochs, max_steps=args.max_steps, seed=args.seed,
        logging_steps=args.logging_steps, save_steps=args.save_steps, base_model_id=base_id, split=args.split,
        group_by_passage=args.group_by_passage, report_to=args.report_to,
        data=_dataset_name(args.dataset) + (f" ({len(train)} training contexts)" if args.limit_contexts else ""),
        extra={"model_source": args.model_name_or_path} if args.model_name_or_path == OFFLINE_MODEL else {},
    )
    print(f"{len(train)} training contexts, recipe={args.recipe}, label_mode={args.label_mode}, "
          f"{'QLoRA' if config.qlora else 'LoRA'}, device={'cuda' if torch.cuda.is_available() else 'cpu'}")
    if args.resume_from_checkpoint:
        step = checkpoint_step(Path(args.resume_from_checkpoint))
        print(f"resuming from {args.resume_from_checkpoint} (global step {step})", flush=True)
    start = time.perf_counter()
    trainer = train_instruct(model, tokenizer, train, evals, config, resume_from_checkpoint=args.resume_from_checkpoint)
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals_ = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    summary = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "eval_loss": evals_,
        "seconds": round(seconds, 1),
        "output_dir": config.output_dir,
    }
    if repo_id and trainer.is_world_process_zero():  # several processes: one push
        from varylm_hf.hub import HubError, push_adapter

        try:
            result = push_adapter(config.output_dir, repo_id, base_model=base_id, private=args.hub_private_repo or None,
                                  token=args.hub_token)
        except HubError as err:  # the adapter is saved: say how to push it again
            raise HubError(f"{err} (the adapter is saved in {config.output_dir}: push it with `varylm push "
                           f"{config.output_dir} {repo_id}`)") from None
        summary["pushed"] = {"repo": repo_id, "commit": result.commit, "files": len(result.files)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from varylm_hf.hub import HubError

    try:
        sys.exit(main())
    except (InputError, UsageError, HubError) as err:  # HubError: no/refused token, Hub unreachable (one line)
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except VarylmError as err:  # e.g. a non-finite loss during training: one line, no traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(1)
