"""kill -9 and resume through examples/train_gpt2.py (issue #10 item 5).

A tiny GPT-2 (dropout on, so the restored RNG state matters) trains for a few dozen steps with a
checkpoint every few steps. One run goes uninterrupted; a second one is killed with SIGKILL once a
checkpoint inside the second epoch exists, then resumed with ``--resume_from_checkpoint last``. The
resumed run must log from the checkpoint's step on (not from step 1), log the same losses at the
same steps, and end with a byte-identical model.safetensors. Parametrised over the default shuffled
sampler and ``--group_by_passage`` (PassageGroupedSampler, several passages, resumed mid-epoch).
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_gpt2.py"

CONTEXTS = 120  # the first 120 training contexts span 3 passages (56 + 57 + 7 contexts)
BATCH = 8
STEPS_PER_EPOCH = CONTEXTS // BATCH  # 15
MAX_STEPS = 50  # 3.3 epochs
SAVE_STEPS = 4
KILL_AT = STEPS_PER_EPOCH + 1  # kill once a checkpoint of the second epoch (step 16) exists


def script_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def make_tiny_model_dir(path: Path, dropout: float = 0.1) -> Path:
    """A 2-layer GPT-2 (hidden 32) + tiny byte-level BPE tokenizer, saved as safetensors."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from conftest import make_tiny_word_tokenizer

    tokenizer = make_tiny_word_tokenizer("bytelevel")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=128,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"))


def train_cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--model_name_or_path", str(model), "--output_dir", str(out),
            "--max_train_contexts", str(CONTEXTS), "--max_eval_contexts", "4",
            "--per_device_train_batch_size", str(BATCH), "--max_steps", str(MAX_STEPS),
            "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS), "--save_total_limit", "2",
            "--logging_steps", "1", "--eval_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true",
            "--report_to", "none", "--seed", "7", "--learning_rate", "1e-3", *extra]


def complete_checkpoints(out: Path) -> dict[int, Path]:
    """step -> folder, for checkpoints whose trainer_state.json (written last) parses."""
    found = {}
    for folder in out.glob("checkpoint-*"):
        try:
            state = json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found[state["global_step"]] = folder
    return found


def logged_losses(stdout: str) -> list[dict]:
    """The Trainer's printed step logs ({'loss': ..., 'epoch': ...}, one per step with logging_steps 1)."""
    logs = []
    for line in stdout.splitlines():
        if line.startswith("{'loss'"):
            logs.append(ast.literal_eval(line))
    return logs


def step_history(checkpoint: Path) -> list[tuple]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [(h["step"], h["loss"], h["grad_norm"], h["learning_rate"]) for h in state["log_history"] if "loss" in h]


# ~25 s each on a 2-core CPU (up to ~50 s under load): three script starts dominate; the second variant is slow-marked
@pytest.mark.parametrize("sampler", ["shuffled", pytest.param("group_by_passage", marks=pytest.mark.slow)])
def test_kill9_then_resume_last_matches_uninterrupted_run(tiny_model_dir, tmp_path, sampler):
    extra = ["--group_by_passage", "true"] if sampler == "group_by_passage" else []

    # 1. uninterrupted reference run
    full = tmp_path / "full"
    ref = subprocess.run(train_cmd(tiny_model_dir, full, *extra), capture_output=True, text=True, env=script_env(),
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert len(logged_losses(ref.stdout)) == MAX_STEPS

    # 2. the same run, killed with SIGKILL once a checkpoint of the second epoch is complete
    out = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(train_cmd(tiny_model_dir, out, *extra), stdout=log, stderr=subprocess.STDOUT,
                                env=script_env())
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if any(step >= KILL_AT for step in complete_checkpoints(out)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended (status {proc.returncode}) before it could be killed: raise MAX_STEPS\n"
        + (tmp_path / "killed.log").read_text()[-3000:])
    assert not (out / "model.safetensors").exists()  # killed before the final save
    steps = complete_checkpoints(out)
    resume_step = max(steps)
    assert KILL_AT <= resume_step < MAX_STEPS

    # 3. resume from the newest complete checkpoint
    res = subprocess.run(train_cmd(tiny_model_dir, out, *extra, "--resume_from_checkpoint", "last"),
                         capture_output=True, text=True, env=script_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(rf"resuming from \S*checkpoint-{resume_step} \(global step {resume_step}\)", res.stdout), res.stdout
    logs = logged_losses(res.stdout)
    assert len(logs) == MAX_STEPS - resume_step  # the log goes on from the checkpoint, not from step 1
    assert float(logs[0]["epoch"]) == pytest.approx((resume_step + 1) / STEPS_PER_EPOCH, abs=1e-3)

    # same losses, gradient norms and learning rates at every step as the uninterrupted run
    resumed_history = step_history(out / f"checkpoint-{MAX_STEPS}")
    assert [h[0] for h in resumed_history] == list(range(1, MAX_STEPS + 1))
    assert resumed_history == step_history(full / f"checkpoint-{MAX_STEPS}")

    # identical final weights: every tensor, and the file byte for byte
    import torch
    from safetensors.torch import load_file

    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert (full / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    # the starting weights did change (the comparison is not vacuous)
    start = load_file(tiny_model_dir / "model.safetensors")
    assert not torch.equal(start["transformer.h.0.mlp.c_fc.weight"], a["transformer.h.0.mlp.c_fc.weight"])


def test_resume_from_explicit_checkpoint_path(tiny_model_dir, tmp_path):
    """--resume_from_checkpoint PATH: a finished run resumed from its own step-8 checkpoint redoes steps 9..."""
    out = tmp_path / "run"
    cmd = train_cmd(tiny_model_dir, out, "--max_steps", "12", "--save_total_limit", "5")
    first = subprocess.run(cmd, capture_output=True, text=True, env=script_env(), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    reference = (out / "model.safetensors").read_bytes()
    again = subprocess.run(cmd + ["--resume_from_checkpoint", str(out / "checkpoint-8")], capture_output=True,
                           text=True, env=script_env(), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(global step 8)" in again.stdout
    assert len(logged_losses(again.stdout)) == 4
    assert (out / "model.safetensors").read_bytes() == reference


INSTRUCT = REPO / "examples" / "train_instruct.py"


@pytest.fixture(scope="module")
def tiny_chat_model_dir(tmp_path_factory):
    """A 2-layer Llama with a ChatML tokenizer (conftest), positions for Provo's longest prompts."""
    from conftest import make_tiny_chat_tokenizer, make_tiny_llama

    path = tmp_path_factory.mktemp("tiny-chat")
    tokenizer = make_tiny_chat_tokenizer()
    model = make_tiny_llama(tokenizer)
    model.config.max_position_embeddings = 2048
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("recipe", ["var", pytest.param("sft", marks=pytest.mark.slow)])
def test_train_instruct_resume_gives_the_same_adapter(tiny_chat_model_dir, tmp_path, recipe):
    """examples/train_instruct.py --save_steps writes checkpoints; --resume_from_checkpoint (a path, then
    'last' after deleting the later checkpoints) continues from one and ends with the same LoRA adapter."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(INSTRUCT), "--model_name_or_path", str(tiny_chat_model_dir), "--no-qlora",
           "--recipe", recipe, "--limit_contexts", "2", "--max_steps", "6", "--save_steps", "2",
           "--logging_steps", "1", "--no-eval", "--output_dir", str(out)]
    if recipe == "sft":
        cmd += ["--batch_size", "4", "--per_device_batch_size", "4"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=script_env(), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(complete_checkpoints(out)) == [2, 4, 6]
    reference = (out / "adapter_model.safetensors").read_bytes()

    again = subprocess.run(cmd + ["--resume_from_checkpoint", str(out / "checkpoint-2")], capture_output=True,
                           text=True, env=script_env(), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(global step 2)" in again.stdout
    assert len(logged_losses(again.stdout)) == 4  # steps 3..6 only
    assert (out / "adapter_model.safetensors").read_bytes() == reference

    import shutil

    shutil.rmtree(out / "checkpoint-6")  # as if killed between the checkpoints of step 4 and step 6
    (out / "checkpoint-4" / "trainer_state.json").write_text("{")  # ... and while writing step 4's
    last = subprocess.run(cmd + ["--resume_from_checkpoint", "last"], capture_output=True, text=True,
                          env=script_env(), timeout=300)
    assert last.returncode == 0, last.stderr[-3000:]
    assert "incomplete checkpoint" in last.stderr and "(global step 2)" in last.stdout
    assert (out / "adapter_model.safetensors").read_bytes() == reference
