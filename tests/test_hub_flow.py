"""The whole flow by Hub ids against the loopback Hub (issue #12): data -> Hub -> training -> Hub -> eval -> card.

1. ``varylm data build`` writes the packaged Provo norms as a Hub-layout folder; ``varylm push`` uploads it as
   ``tester/provo_cloze`` (and a tiny random GPT-2 as ``tester/tiny-gpt2``, the base model);
2. ``examples/train_gpt2.py --model_name_or_path tester/tiny-gpt2 --dataset tester/provo_cloze --push_to_hub``
   trains two steps, reading both by id, and pushes the run with varylm's push (the token given only as
   ``--hub_token``);
3. ``varylm eval run --model tester/tiny-gpt2-var --dataset tester/provo_cloze --mode exact`` evaluates the pushed
   model by id;
4. :func:`varylm_hf.hub.push_eval_summary` puts that evaluation into the repo's card (no code path does it
   automatically: ``varylm eval run`` writes a local run folder only), and the card pulled back shows the run's
   TVD and a ``varylm eval run`` command line that the CLI's parser accepts.

Steps 2 and 3 run as subprocesses with ``HF_ENDPOINT`` set before Python starts (datasets and transformers copy
it when imported, see tests/test_hub.py); pushes and pulls run in this process. ~16 s on the shared 2-core CPU
(the two subprocess starts dominate), so not marked slow.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "_".join(("hf", "loopbackFlowToken0123456789abcdef"))  # token-shaped at run time only: no secret-like literal
NS = "tester"
DATASET = f"{NS}/provo_cloze"
BASE = f"{NS}/tiny-gpt2"
MODEL = f"{NS}/tiny-gpt2-var"


def _env(hub_url: str, home: Path, *, token: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    if token:
        env["HF_TOKEN"] = TOKEN
    return env


def _run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=str(cwd), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """Run the four steps once; return what each left locally and on the Hub."""
    from huggingface_hub import constants

    from varylm_hf.cli import main
    from varylm_hf.hub import pull, push_eval_summary

    from conftest import make_tiny_word_tokenizer, tiny_gpt2

    root = tmp_path_factory.mktemp("flow")
    home = root / "hf_home"
    mp = pytest.MonkeyPatch()
    with HubServer(token=TOKEN) as hub:
        try:
            mp.setenv("HF_ENDPOINT", hub.url)
            mp.setenv("HF_TOKEN", TOKEN)
            mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
            mp.setattr(constants, "HF_HUB_OFFLINE", False)
            mp.setattr(constants, "HF_HUB_CACHE", str(root / "hf_cache"))
            # 1. the dataset and the base model, by id
            assert main(["data", "build", "--out", str(root / "provo_cloze")]) == 0
            assert main(["push", str(root / "provo_cloze"), DATASET]) == 0
            tokenizer = make_tiny_word_tokenizer("bytelevel")  # byte-level: every Provo word is spellable
            tiny_gpt2(len(tokenizer)).save_pretrained(root / "tiny-gpt2")
            tokenizer.save_pretrained(root / "tiny-gpt2")
            assert main(["push", str(root / "tiny-gpt2"), BASE]) == 0
            # 2. train by ids and push (token only on the command line: it must not reach any file)
            out = root / "run"
            train = [sys.executable, str(ROOT / "examples" / "train_gpt2.py"), "--model_name_or_path", BASE,
                     "--dataset", DATASET, "--push_to_hub", "--hub_model_id", MODEL.split("/")[1],
                     "--hub_token", TOKEN, "--output_dir", str(out), "--max_train_contexts", "8",
                     "--max_eval_contexts", "4", "--per_device_train_batch_size", "4", "--max_steps", "2",
                     "--eval_strategy", "no", "--save_strategy", "no", "--learning_rate", "1e-3",
                     "--logging_steps", "1", "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true"]
            trained = _run(train, _env(hub.url, home, token=False), root)
            pushed = {"files": hub.files(MODEL), "commits": hub.commits(MODEL)}
            # 3. evaluate the pushed model by id, on the pushed dataset
            evaluation = ["eval", "run", "--model", MODEL, "--dataset", DATASET, "--mode", "exact", "--limit", "5",
                          "--out", str(root / "eval"), "--quiet", "--no-figures", "--device", "cpu"]
            _run([sys.executable, "-m", "varylm_hf.cli", *evaluation], _env(hub.url, home, token=True), root)
            summary = json.loads((root / "eval" / "summary.json").read_text())
            # 4. the evaluation into the card, then pull the card back
            carded = push_eval_summary(MODEL, root / "eval" / "summary.json")
            again = push_eval_summary(MODEL, root / "eval" / "summary.json")
            card = (pull(MODEL, local_dir=root / "pulled") / "README.md").read_text(encoding="utf-8")
            final = {"files": hub.files(MODEL), "commits": hub.commits(MODEL),
                     "all_repos": {(t, r): hub.files(r, t) for t, r in (("model", BASE), ("model", MODEL),
                                                                         ("dataset", DATASET))}}
        finally:
            mp.undo()
    return {"root": root, "out": out, "log": trained.stdout + trained.stderr, "pushed": pushed, "summary": summary,
            "card": card, "final": final, "carded": carded, "again": again}


def test_push_to_hub_uploads_varylm_card_run_file_and_model(flow):
    """The training push is one commit of `varylm push`'s artifacts: no Trainer card, no pickles, no checkpoints."""
    files, out = flow["pushed"]["files"], flow["out"]
    assert [c["summary"] for c in flow["pushed"]["commits"]][:2] == ["End of training (examples/train_gpt2.py)",
                                                                  "initial commit"]
    assert len(flow["pushed"]["commits"]) == 2
    for name in ("model.safetensors", "config.json", "varylm_run.json", "tokenizer.json"):
        assert files[name] == (out / name).read_bytes(), name
    assert not [n for n in files if n.endswith((".bin", ".pt", ".pth")) or n.startswith("checkpoint-")]
    card = files["README.md"].decode()
    assert "trained with varylm-hf" in card and "## Training recipe" in card and "base_model: tiny" not in card
    assert "generated automatically" not in card and "More information needed" not in card  # Trainer's card
    assert f"base_model: {BASE}" in card and f"- {DATASET}" in card
    run = json.loads(files["varylm_run.json"])
    assert run["base_model"] == BASE and run["dataset"] == DATASET and run["hub_model_id"] == MODEL
    assert f"pushed {out} -> " in flow["log"]


def test_no_token_in_any_file(flow):
    for path in flow["root"].rglob("*"):
        if path.is_file():  # the run folder, the eval run, the pulled card, both Hugging Face caches
            assert TOKEN.encode() not in path.read_bytes(), path
    run = json.loads((flow["out"] / "varylm_run.json").read_text())
    assert "--hub_token '<redacted>'" in run["command"] or "--hub_token <redacted>" in run["command"]
    for (repo_type, repo), files in flow["final"]["all_repos"].items():
        for name, data in files.items():
            assert TOKEN.encode() not in data, (repo_type, repo, name)


def test_pulled_card_shows_the_eval_tvd_and_a_command_the_cli_accepts(flow):
    from huggingface_hub import ModelCard

    from varylm_hf.cli import make_parser

    card, summary = flow["card"], flow["summary"]
    assert summary["n_contexts"] == 5 and summary["mean_tvd"] == summary["exact"]["tvd"]["mean"]
    results = {r.metric_name: r.metric_value for r in ModelCard(card).data.eval_results}
    assert results["mean TVD (lower is better)"] == pytest.approx(summary["mean_tvd"], abs=1e-12)
    assert results["oracle TVD (human split-half)"] == pytest.approx(summary["oracle_tvd"], abs=1e-12)
    assert f"| test | {summary['mean_tvd']:.4f} | {summary['oracle_tvd']:.4f} | 5 | `exact`, seeds 42 |" in card
    commands = [line for line in card.splitlines() if line.startswith("varylm ")]
    assert commands == [f"varylm eval run --model {MODEL} --dataset {DATASET} --mode both --out runs/eval/tiny-gpt2-var"]
    args = make_parser().parse_args(shlex.split(commands[0])[1:])  # exits (status 2) if argparse rejects it
    assert (args.eval_command, args.model, args.dataset, args.mode) == ("run", MODEL, DATASET, "both")
    assert json.loads(flow["final"]["files"]["eval_summary.json"])["mean_tvd"] == summary["mean_tvd"]


def test_card_update_is_one_commit_and_idempotent(flow):
    """push_eval_summary sends README.md + eval_summary.json only (no weights); the same summary again: no commit."""
    assert sorted(flow["carded"].files) == ["README.md", "eval_summary.json"]
    assert flow["again"].commit == flow["carded"].commit
    assert [c["summary"] for c in flow["final"]["commits"]][0] == "Add varylm evaluation"
    assert len(flow["final"]["commits"]) == 3
    assert flow["final"]["files"]["model.safetensors"] == flow["pushed"]["files"]["model.safetensors"]



def test_push_to_hub_problems_stop_before_anything_is_loaded(gpt2_script, tmp_path, monkeypatch, capfd):
    """A refused token, a checkpoint hub strategy, a local base model without its Hub id: one line, exit 2,
    no output folder, no model loaded (the models named here do not exist)."""
    from huggingface_hub import constants

    local = tmp_path / "local-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    cases = [
        (["--model_name_or_path", "nobody/missing-model"], "wrong-token", "refused the token (HTTP 401)"),
        (["--model_name_or_path", "nobody/missing-model", "--hub_strategy", "checkpoint"], TOKEN,
         "--hub_strategy checkpoint"),
        (["--model_name_or_path", str(local)], TOKEN, "pass --base_model_id NAMESPACE/NAME"),
        (["--model_name_or_path", "nobody/missing-model", "--hub_model_id", "a/b/c"], TOKEN, "--hub_model_id"),
    ]
    with HubServer(token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        for extra, token, fragment in cases:
            monkeypatch.setenv("HF_TOKEN", token)
            out = tmp_path / "never"
            assert gpt2_script.run([*extra, "--push_to_hub", "--output_dir", str(out), "--use_cpu", "true"]) == 2
            err = capfd.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], (extra, err)
            assert "wrong-token" not in err[0] and TOKEN not in err[0]
            assert not out.exists()
        assert not [path for _, path in hub.requests if "/repos/create" in path or "/commit/" in path]
