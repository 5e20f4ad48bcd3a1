"""Helper run by test_trainer.py under 1 process or `torchrun --nproc_per_node 2` (gloo, CPU).

Usage: python tests/ddp_train_helper.py OUT.json PER_DEVICE_BATCH STEPS
Writes the logged loss curve and a parameter checksum (rank 0).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


from varylm_hf.training.var import VarTrainingArguments, train_var  # noqa: E402

from conftest import make_tiny_word_tokenizer, tiny_gpt2  # noqa: E402
from test_trainer import make_records  # noqa: E402


def main(out, per_device, steps):
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok))
    args = VarTrainingArguments(output_dir=os.path.dirname(out) + "/run", use_cpu=True, report_to="none",
                                save_strategy="no", disable_tqdm=True, per_device_train_batch_size=per_device,
                                learning_rate=1e-3, logging_steps=1, max_steps=steps, seed=11)
    trainer = train_var(model, tok, make_records(), None, args)
    if trainer.is_world_process_zero():
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        checksum = float(sum(p.detach().double().abs().sum() for p in model.parameters()))
        with open(out, "w") as fh:
            json.dump({"losses": losses, "checksum": checksum,
                       "world_size": int(os.environ.get("WORLD_SIZE", 1))}, fh)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
