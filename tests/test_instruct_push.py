"""`examples/train_instruct.py --push_to_hub` against the loopback Hub (issue #12): the adapter, varylm's adapter card
and varylm_run.json in one commit, the base model named by its Hub id, the token in no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "_".join(("hf", "loopbackInstructToken0123456789ab"))  # token-shaped at run time only: no secret-like literal
REPO = "tester/tiny-chat-var"


def test_train_instruct_push_to_hub(tmp_path):
    from conftest import make_tiny_chat_tokenizer, make_tiny_llama

    tok = make_tiny_chat_tokenizer()
    make_tiny_llama(tok).save_pretrained(tmp_path / "tiny-chat")
    tok.save_pretrained(tmp_path / "tiny-chat")
    out = tmp_path / "run"
    with HubServer(token=TOKEN) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1",
                   OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        cmd = [sys.executable, str(ROOT / "examples" / "train_instruct.py"), "--model_name_or_path",
               str(tmp_path / "tiny-chat"), "--no-qlora", "--recipe", "var", "--limit_contexts", "4", "--max_steps",
               "2", "--no-eval", "--output_dir", str(out), "--push_to_hub", "--hub_model_id", "tiny-chat-var",
               "--hub_token", TOKEN]
        refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and "--base_model_id" in refused.stderr and not out.exists()
        proc = subprocess.run(cmd + ["--base_model_id", "tester/tiny-chat"], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        files, commits = hub.files(REPO), hub.commits(REPO)
    assert [c["summary"] for c in commits][:-1] == [c["summary"] for c in commits if c["parent"]]  # one push commit
    assert len(commits) == 2 and commits[-1]["summary"] == "initial commit"
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "varylm_run.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "tester/tiny-chat"
    card = files["README.md"].decode()
    assert "base_model: tester/tiny-chat" in card and "varylm eval run" in card
    summary = json.loads(proc.stdout[proc.stdout.rindex("\n{\n") + 1:])  # the script's closing summary
    assert summary["pushed"]["repo"] == REPO and summary["steps"] == 2
    for path in out.rglob("*"):  # the token is in no local file and in no pushed file
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert not [name for name, data in files.items() if TOKEN.encode() in data]
