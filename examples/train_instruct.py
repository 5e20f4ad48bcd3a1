"""Teach an instruction-tuned LM human next-word variability by answer-augmented SFT (paper §3.2).

Paper run (Mistral-7B-Instruct-v0.3, QLoRA, lr 1e-4, batch 32 rows, 4 epochs, seed 42; one GPU):

    python examples/train_instruct.py

Offline CPU run on the SmolLM2-135M-Instruct GGUF with plain LoRA and the fast path
(one row per context instead of one per answer; 40 contexts, ~2-3 min on 2 cores):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe var --limit_contexts 40 --num_train_epochs 1 --output_dir runs/instruct-smollm2

The same with TRL's SFTTrainer on the augmented rows (~40 rows per context; slower):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe sft --limit_contexts 8 --max_steps 10 --batch_size 8 --per_device_batch_size 8

QLoRA is the default wherever bitsandbytes imports (CUDA: bf16 compute; CPU: float32 compute, ~60 s per
context step for SmolLM2 on 2 cores, see docs/qlora.md); without it the script says so and trains LoRA.

The adapter folder holds a PEFT model card and ``varylm_run.json``; load it with
``PeftModel.from_pretrained(base, folder)`` or ``AutoPeftModelForCausalLM.from_pretrained(folder)``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from varylm_hf.errors import InputError
from varylm_hf.sft import LABEL_MODES, RECIPES, InstructConfig

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"


def make_parser() -> argparse.ArgumentParser:
    """Command-line options; defaults reproduce the paper's Mistral run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name_or_path", default=PAPER_MODEL, help="Hub id, folder, .gguf file or 'smollm2-gguf'")
    p.add_argument("--qlora", action=argparse.BooleanOptionalAction, default=True,
                   help="4-bit nf4 QLoRA (default; falls back to LoRA without bitsandbytes)")
    p.add_argument("--recipe", choices=RECIPES, default="sft",
                   help="sft: TRL SFTTrainer on augmented rows; var: same objective, one row per context")
    p.add_argument("--label_mode", choices=LABEL_MODES, default="all", help="all human answers, majority, or corpus word")
    p.add_argument("--split", default="paper", help="passage split of the Provo data (default: the paper's)")
    p.add_argument("--limit_contexts", type=int, default=None, help="train on N random training contexts (quick runs)")
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                   help="eval loss on the validation split each epoch (limited like the training data)")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--batch_size", type=int, default=None, help="rows (sft, default 32) or contexts (var, default 1)")
    p.add_argument("--per_device_batch_size", type=int, default=None, help="micro-batch; the rest is accumulation")
    p.add_argument("--num_train_epochs", type=float, default=4)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--output_dir", default=None, help="default: runs/instruct-<recipe>-<label_mode>")
    p.add_argument("--base_model_id", default=None, help="Hub id recorded as the adapter's base model")
    return p


def _subset(records, n, seed):
    if n is None or n >= len(records):
        return records
    if n < 1:
        raise InputError(f"--limit_contexts {n}: must be >= 1")
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in picked]


def main(argv=None) -> int:
    """Parse arguments, load data and model, train, save; returns the exit status."""
    args = make_parser().parse_args(argv)
    import torch
    from transformers import set_seed

    from varylm_hf.data import load_provo, split_records
    from varylm_hf.modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID, load_model_and_tokenizer
    from varylm_hf.sft import load_qlora_model, qlora_available, train_instruct

    set_seed(args.seed)
    splits = split_records(load_provo(), args.split)
    train = _subset(splits["train"], args.limit_contexts, args.seed)
    evals = _subset(splits["validation"], args.limit_contexts, args.seed) if args.eval else None

    qlora = args.qlora
    if qlora:
        qlora, reason = qlora_available()
        if not qlora:
            print(f"QLoRA unavailable ({reason}): training plain LoRA on the full-precision model", file=sys.stderr)
    if qlora:  # 4-bit nf4; bf16 compute on CUDA, float32 on CPU; GGUF files are dequantised first
        model, tokenizer = load_qlora_model(args.model_name_or_path)
    else:
        model, tokenizer = load_model_and_tokenizer(args.model_name_or_path)
    if args.model_name_or_path == OFFLINE_MODEL:
        base_id = args.base_model_id or OFFLINE_MODEL_HUB_ID
    else:
        base_id = args.base_model_id or args.model_name_or_path
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--model_name_or_path {args.model_name_or_path}: tokenizer has no chat template "
                         "(the instruction recipe needs an instruction-tuned model)")
    config = InstructConfig(
        output_dir=args.output_dir or f"runs/instruct-{args.recipe}-{args.label_mode}",
        recipe=args.recipe, label_mode=args.label_mode, qlora=qlora,
        learning_rate=args.learning_rate, batch_size=args.batch_size, per_device_batch_size=args.per_device_batch_size,
        num_train_epochs=args.num_train_epochs, max_steps=args.max_steps, seed=args.seed,
        logging_steps=args.logging_steps, base_model_id=base_id, split=args.split,
        data="provo" + (f" ({len(train)} training contexts)" if args.limit_contexts else ""),
        extra={"model_source": args.model_name_or_path} if args.model_name_or_path == OFFLINE_MODEL else {},
    )
    print(f"{len(train)} training contexts, recipe={args.recipe}, label_mode={args.label_mode}, "
          f"{'QLoRA' if config.qlora else 'LoRA'}, device={'cuda' if torch.cuda.is_available() else 'cpu'}")
    start = time.perf_counter()
    trainer = train_instruct(model, tokenizer, train, evals, config)
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
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    try:
        sys.exit(main())
    except InputError as err:
        print(f"train_instruct.py: error: {err}", file=sys.stderr)
        sys.exit(2)
