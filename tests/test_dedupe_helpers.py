"""Helpers that replaced repeated blocks (issue #12), and the metric Space's choice of what to load."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from varylm_hf import commands
from varylm_hf._io import check_gguf, check_safetensors
from varylm_hf.errors import InputError

APP = Path(__file__).resolve().parents[1] / "metrics" / "tvd" / "app.py"


# --------------------------------------------------------------------- argparse type functions
@pytest.mark.parametrize(("func", "text", "value"), [
    (commands.positive_float, "0.5", 0.5),
    (commands.fraction, "0.25", 0.25),
    (commands.top_p, "1", 1.0),
    (commands.positive_int, "1", 1),
    (commands.non_negative_int, "0", 0),
    (commands.limit, "0", 0),
    (commands.seed, str(commands.MAX_SEED), commands.MAX_SEED),
])
def test_argument_types_accept(func, text, value):
    out = func(text)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize(("func", "text", "message"), [
    (commands.positive_float, "0", "must be > 0, got '0'"),
    (commands.positive_float, "inf", "expected a finite number, got 'inf'"),
    (commands.fraction, "1", "must be a fraction in (0, 1), got '1'"),
    (commands.top_p, "0", "must be in (0, 1], got '0'"),
    (commands.top_p, "x", "expected a number, got 'x'"),
    (commands.positive_int, "0", "must be >= 1, got '0'"),
    (commands.positive_int, "1.5", "expected an integer, got '1.5'"),
    (commands.non_negative_int, "-1", "must be >= 0, got '-1'"),
    (commands.limit, "-1", "must be >= 0 (0 means all), got '-1'"),
    (commands.seed, str(commands.MAX_SEED + 1), f"must be an integer in [0, 2**32 - 1], got '{commands.MAX_SEED + 1}'"),
])
def test_argument_types_refuse_with_one_line(func, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        func(text)
    assert str(info.value) == message


# --------------------------------------------------------------------------- weight files
@pytest.mark.parametrize("check", [check_safetensors, check_gguf])
def test_unreadable_weight_files_are_one_input_error(check, tmp_path):
    missing = tmp_path / "missing.bin"
    with pytest.raises(InputError, match=r"missing\.bin: cannot read it"):
        check(missing)
    with pytest.raises(InputError, match=r"^weights: cannot read it"):  # a folder: open() fails
        check(tmp_path, what="weights")


def test_gguf_magic_is_checked(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"NOPE" + b"\0" * 16)
    with pytest.raises(InputError, match="not a GGUF file"):
        check_gguf(path)


# ------------------------------------------------------------------------- metrics/tvd/app.py
@pytest.fixture(scope="module")
def app():
    """metrics/tvd/app.py imported as a module: defines functions, launches nothing, needs no gradio."""
    spec = importlib.util.spec_from_file_location("tvd_space_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_space_loads_its_own_id(app):
    assert app.module_path({"SPACE_ID": "me/tvd"}) == "me/tvd"
    assert "varylm/tvd" not in APP.read_text()


def test_outside_a_space_the_local_script_is_loaded(app, monkeypatch):
    local = str(APP.with_name("tvd.py"))
    assert app.module_path({}) == local
    assert app.module_path({"SPACE_ID": "  "}) == local
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.module_path() == local and Path(local).is_file()
    monkeypatch.setenv("SPACE_ID", "someone/tvd")
    assert app.module_path() == "someone/tvd"


def test_the_local_fallback_is_a_path_evaluate_loads(app):
    evaluate = pytest.importorskip("evaluate")
    tvd = evaluate.load(app.module_path({}))
    assert tvd.compute(predictions=[["a"]], references=[["a", "b"]])["tvd"] == 0.5


# ------------------------------------------------------------------------- the push functions
def test_push_pairs_share_one_signature_and_keep_their_names():
    """push_model/push_adapter and push_dataset/push_metric are each made by one function (varylm_hf.hub)."""
    import inspect

    from varylm_hf import hub

    common = ["folder", "repo_id", "private", "commit_message", "endpoint", "token", "allow_pickle",
              "include_checkpoints"]
    card = ["base_model", "run_config", "eval_summary", "card"]
    for func, names in ((hub.push_model, card), (hub.push_adapter, card), (hub.push_dataset, []),
                        (hub.push_metric, [])):
        assert func.__name__ == func.__qualname__ and hub.__dict__[func.__name__] is func
        assert sorted(inspect.signature(func).parameters) == sorted(common + names), func.__name__
        assert func.__doc__.startswith("Push ")
    assert hub.push_model.__code__ is hub.push_adapter.__code__
    assert hub.push_dataset.__code__ is hub.push_metric.__code__
    with pytest.raises(TypeError, match="base_model"):
        hub.push_dataset("x", "me/x", base_model="me/b")  # the dataset's signature has no card options
