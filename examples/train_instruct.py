"""Teach an instruction-tuned LM human next-word variability by answer-augmented SFT (paper §3.2).

Paper run (Mistral-7B-Instruct-v0.3, QLoRA, lr 1e-4, batch 32 rows, 4 epochs, seed 42; one GPU):

    python examples/train_instruct.py

Offline CPU run on the SmolLM2-135M-Instruct GGUF with plain LoRA and the fast path
(one row per context instead of one per answer; 40 contexts, ~1 min on 2 cores):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe var --limit_contexts 40 --num_train_epochs 1 --output_dir runs/instruct-smollm2

The options are TRL's: ``trl.TrlParser`` over this script's :class:`ScriptArguments`,
:class:`varylm_hf.VarSFTConfig` (every ``trl.SFTConfig`` / ``TrainingArguments`` field, plus the recipe's) and
``trl.ModelConfig`` (model, LoRA, 4-bit), with the paper's values as defaults (``--help`` lists them all). A YAML
file with the same keys works as with TRL's scripts, flags after it override it:

    python examples/train_instruct.py --config instruct.yaml --learning_rate 3e-5   # or: ... instruct.yaml

``--batch_size`` counts augmented (prompt, answer) rows in both recipes (default 32, the paper's; the Trainer's
per-device batch and accumulation are derived from it and ``--per_device_batch_size``); ``var`` takes whole
contexts, round(rows / answers per context) of them per step (one Provo context for 32 rows).
``--group_by_passage`` (``var``) batches contexts of one passage, whose prompts then share the passage text in
one token trie: with ``--batch_size 256`` (~6 contexts per step) one epoch of all 1,892 training contexts
takes about half the time of one context per step (docs/benchmarks.md).

The same with TRL's SFTTrainer on the augmented rows (~40 rows per context; slower):

    OMP_NUM_THREADS=2 python examples/train_instruct.py --model_name_or_path smollm2-gguf --no-qlora \\
        --recipe sft --limit_contexts 8 --max_steps 10 --batch_size 8 --per_device_batch_size 8

QLoRA (``--qlora``, i.e. ModelConfig's ``--load_in_4bit``) is the default wherever bitsandbytes imports (CUDA:
bf16 compute; CPU: float32 compute, ~60 s per context step for SmolLM2 on 2 cores, see docs/qlora.md); without
it the script says so and trains LoRA.

Resume after a crash or kill -9: run with ``--save_steps N`` (a checkpoint every N steps in
``--output_dir``), then repeat the command with ``--resume_from_checkpoint last`` (the newest complete
checkpoint) or ``--resume_from_checkpoint DIR/checkpoint-N``.

Bad arguments (a batch size of 0, ``--learning_rate nan``, ``--limit_contexts -1``, an ``--output_dir``
that is a file, a missing model folder, a bad YAML file...) stop before anything is loaded or created: one line
on stderr (``error: ...``), exit status 2.

``--push_to_hub --hub_model_id NAME`` pushes the adapter, its card and ``varylm_run.json`` in one commit after
training, as ``varylm push OUTPUT_DIR REPO_ID`` does (not the Trainer's push; the base model named by its Hub id:
a local ``--model_name_or_path`` needs ``--base_model_id``; the token is checked before anything is loaded).

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
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # before torch is imported (through trl): torch reads it once
    os.environ.setdefault("OMP_NUM_THREADS", "2")
# bitsandbytes warns on every start on CPUs with AVX512-BF16 that an optional kernel package is missing;
# that line is noise here and would make a one-line error two lines.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "gemm_4bit_forward from kernels-community" not in record.getMessage())

from trl import ModelConfig, TrlParser  # noqa: E402

from varylm_hf.errors import InputError, VarylmError  # noqa: E402
from varylm_hf.hub import HubError, check_hub_id  # noqa: E402
from varylm_hf.modeling import OFFLINE_MODEL  # noqa: E402
from varylm_hf.run_folders import check_output_dir, checkpoint_step, remove_empty_tree, resolve_resume  # noqa: E402
from varylm_hf.training.adapters import PAPER_MODEL_CONFIG, check_model_config  # noqa: E402
from varylm_hf.training.sft_config import VarSFTConfig  # noqa: E402

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"


@dataclass
class ScriptArguments:
    """Which data to train on."""

    dataset: str | None = field(default=None, metadata={
        "help": "A cloze dataset in the Hub layout: a folder of `varylm data build` or a Hub id (default: the Provo "
                "norms shipped in varylm-hf)."})
    limit_contexts: int | None = field(default=None, metadata={
        "help": "Train on N random training contexts (quick runs); 0 or unset: all; negative: an error."})
    eval: bool = field(default=True, metadata={
        "help": "Eval loss on the validation split each epoch (limited like the training data)."})


class UsageError(Exception):
    """A command-line or YAML error (printed as one line, exit status 2)."""


class _Parser(TrlParser):
    def error(self, message):  # argparse prints usage + message (two lines); raise instead: one line
        raise UsageError(message)


def make_parser() -> TrlParser:
    """ScriptArguments + VarSFTConfig + ModelConfig; defaults reproduce the paper's Mistral run."""
    parser = _Parser((ScriptArguments, VarSFTConfig, ModelConfig))
    parser.set_defaults(model_name_or_path=PAPER_MODEL, **PAPER_MODEL_CONFIG)
    parser.add_argument("--qlora", dest="load_in_4bit", action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS, help="Same as --load_in_4bit: 4-bit nf4 QLoRA (default; falls "
                        "back to LoRA without bitsandbytes). --no-qlora trains LoRA on the full-precision model.")
    for action in parser._actions:  # say what "last" means; HfArgumentParser keeps TrainingArguments' help
        if action.dest == "resume_from_checkpoint":
            action.help = ("Continue from this checkpoint folder, or 'last' (also 'true'): the newest complete "
                           "checkpoint-N in --output_dir (an error when there is none).")
        elif action.dest == "model_name_or_path":
            action.help = f"Hub id, folder, .gguf file or '{OFFLINE_MODEL}'."
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _config_argv(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` in TrlParser's form (``--config FILE``; ``--config=FILE`` and a lone ``FILE.yaml`` too) and the
    YAML file, if any."""
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")) and not argv[0].startswith("-"):
        argv = ["--config", argv[0]]
    words = []
    for word in argv:
        words += ["--config", word.split("=", 1)[1]] if word.startswith("--config=") else [word]
    if "--config" not in words:
        return words, None
    i = words.index("--config")
    if i + 1 >= len(words):
        raise UsageError("argument --config: expected one argument (a YAML file)")
    return words, words[i + 1]


def parse_arguments(argv: list[str]) -> tuple[ScriptArguments, VarSFTConfig, ModelConfig]:
    """Flags, or ``--config FILE`` plus flags that override its values. Raises InputError/UsageError (one line)."""
    import yaml

    argv, yaml_file = _config_argv(argv)
    try:
        *parsed, from_file, from_flags = make_parser().parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True)
        if from_file:  # ["--key", "value", ...] of the YAML keys that are no option
            raise UsageError(f"unknown option {from_file[0][2:]!r} (see python examples/train_instruct.py --help)")
        if from_flags:
            raise UsageError(f"unrecognized arguments: {' '.join(from_flags)}")
        return tuple(parsed)
    except (OSError, UnicodeDecodeError) as err:  # TrlParser opens the file itself
        if yaml_file is None:
            raise
        raise InputError(f"{yaml_file}: cannot read it ({_one_line(err)})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{yaml_file}: not valid YAML{where} ({getattr(err, 'problem', None) or _one_line(err)})") \
            from err
    except (UsageError, ValueError) as err:  # argparse, unknown options, the configs' checks (InputError too)
        raise UsageError(f"{yaml_file}: {_one_line(err)}" if yaml_file else _one_line(err)) from err


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


def check_arguments(script: ScriptArguments, config: VarSFTConfig, model_args: ModelConfig) -> Path | None:
    """Validate what the parser and the configs let through (resolves --resume_from_checkpoint); returns the
    folder that training will create (see :func:`check_output_dir`)."""
    if script.limit_contexts is not None and script.limit_contexts < 0:
        raise InputError(f"--limit_contexts {script.limit_contexts}: must be >= 0 (0 means all contexts)")
    check_model_config(model_args)
    check_model_source(model_args.model_name_or_path)
    if config.push_to_hub:
        check_push_arguments(config, model_args)
    created = check_output_dir(config.output_dir)
    config.resume_from_checkpoint = resolve_resume(config.resume_from_checkpoint, config.output_dir)
    return created


def check_push_arguments(config: VarSFTConfig, model_args: ModelConfig) -> None:
    """What ``--push_to_hub`` needs, checked offline before anything is loaded (the token is checked in _train)."""
    if config.hub_revision:
        raise InputError(f"--hub_revision {config.hub_revision}: not supported with varylm's push (it commits to main)")
    if config.hub_model_id:
        name = config.hub_model_id
        check_hub_id(name if "/" in name else f"namespace/{name}", "--hub_model_id")
    if config.base_model_id:
        check_hub_id(config.base_model_id, "--base_model_id")
    name = model_args.model_name_or_path
    if name != OFFLINE_MODEL and Path(name).expanduser().exists() and not config.base_model_id:
        raise InputError(f"--model_name_or_path {name}: --push_to_hub names the adapter's base model by its Hub id; "
                         "a local folder needs --base_model_id NAMESPACE/NAME")


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


def run(argv: list[str] | None = None) -> int:
    """The script: parse ``argv`` (default ``sys.argv[1:]``), check, train; returns the exit status.

    Bad input: one line ``error: ...`` on stderr and status 2, before any model is loaded or folder made. A run
    that fails before writing anything leaves no folder behind."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        script, config, model_args = parse_arguments(argv)
        created = check_arguments(script, config, model_args)
        try:
            return _train(script, config, model_args)
        except BaseException:
            remove_empty_tree(created)
            raise
    except (InputError, UsageError, HubError) as err:  # HubError: no/refused token, Hub unreachable (one line)
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except VarylmError as err:  # e.g. a non-finite loss during training: one line, no traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1


def _load(config: VarSFTConfig, model_args: ModelConfig):
    """``(model, tokenizer, qlora)``: QLoRA where asked and bitsandbytes works, else the full-precision model."""
    from varylm_hf.modeling import load_model_and_tokenizer
    from varylm_hf.training.adapters import load_qlora_model, qlora_available

    qlora = model_args.load_in_4bit
    if qlora:
        qlora, reason = qlora_available()
        if not qlora:
            print(f"QLoRA unavailable ({reason}): training plain LoRA on the full-precision model", file=sys.stderr)
            model_args.load_in_4bit = False  # what is trained (and recorded in the run file): plain LoRA
    revision = None if model_args.model_revision in (None, "main") else model_args.model_revision
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else None
    try:
        if qlora:  # 4-bit nf4; bf16 compute on CUDA, float32 on CPU (or --dtype); GGUF files are dequantised first
            model, tokenizer = load_qlora_model(model_args.model_name_or_path, revision=revision,
                                                compute_dtype=dtype or "auto", trust_remote_code=config.trust_remote_code)
        else:
            model, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path, revision=revision, dtype=dtype,
                                                        trust_remote_code=config.trust_remote_code)
    except InputError as err:
        raise _model_flag(err) from err
    return model, tokenizer, qlora


def _train(script: ScriptArguments, config: VarSFTConfig, model_args: ModelConfig) -> int:
    import torch
    from transformers import set_seed

    from varylm_hf.data import load_cloze
    from varylm_hf.modeling import OFFLINE_MODEL_HUB_ID
    from varylm_hf.training.instruct import train_instruct

    set_seed(config.seed)
    # varylm pushes the saved adapter itself (push_adapter); the Trainer's push would upload its own card and pickles
    push_to_hub, config.push_to_hub, token = config.push_to_hub, False, config.hub_token
    repo_id = None
    if push_to_hub:  # a missing or refused token fails now, before the data and the model are loaded
        from varylm_hf.hub import resolve_repo_id

        repo_id = resolve_repo_id(config.hub_model_id or Path(config.output_dir).absolute().name, token=token)
    splits = load_cloze(script.dataset, split=config.split)
    train = _subset(splits["train"], script.limit_contexts, config.seed)
    evals = _subset(splits["validation"], script.limit_contexts, config.seed) if script.eval else None

    model, tokenizer, qlora = _load(config, model_args)
    name = model_args.model_name_or_path
    if not config.base_model_id:
        config.base_model_id = OFFLINE_MODEL_HUB_ID if name == OFFLINE_MODEL else name
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--model_name_or_path {name}: tokenizer has no chat template "
                         "(the instruction recipe needs an instruction-tuned model)")
    if config.data is None:
        config.data = _dataset_name(script.dataset) + (f" ({len(train)} training contexts)" if script.limit_contexts else "")
    if name == OFFLINE_MODEL:
        config.run_extra = {**(config.run_extra or {}), "model_source": name}
    print(f"{len(train)} training contexts, recipe={config.recipe}, label_mode={config.label_mode}, "
          f"{'QLoRA' if qlora else 'LoRA'}, device={'cuda' if torch.cuda.is_available() else 'cpu'}")
    if config.resume_from_checkpoint:
        step = checkpoint_step(Path(config.resume_from_checkpoint))
        print(f"resuming from {config.resume_from_checkpoint} (global step {step})", flush=True)
    start = time.perf_counter()
    trainer = train_instruct(model, tokenizer, train, evals, config, resume_from_checkpoint=config.resume_from_checkpoint,
                             model_config=model_args)
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
        from varylm_hf.hub import push_adapter

        try:
            result = push_adapter(config.output_dir, repo_id, base_model=config.base_model_id,
                                  private=config.hub_private_repo or None, token=token)
        except HubError as err:  # the adapter is saved: say how to push it again
            raise HubError(f"{err} (the adapter is saved in {config.output_dir}: push it with `varylm push "
                           f"{config.output_dir} {repo_id}`)") from None
        summary["pushed"] = {"repo": repo_id, "commit": result.commit, "files": len(result.files)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run())
