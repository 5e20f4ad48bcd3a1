"""Subcommands of the ``varylm`` CLI, one module per group (see :mod:`varylm_hf.cli`).

Also the argument checks every group shares: ``type=`` functions for :mod:`argparse` (a bad value
stops the command before anything is loaded, with one line naming the flag) and
:func:`check_out_writable`, run before any compute so that a run never dies at its last step.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from ..errors import InputError

__all__ = [
    "MAX_SEED", "check_out_writable", "finite_float", "fraction", "limit", "non_negative_int",
    "positive_float", "positive_int", "seed", "top_p",
]

#: Seeds go to ``numpy.random.RandomState`` and ``torch.manual_seed``: ``0 <= seed < 2**32``.
MAX_SEED = 2**32 - 1


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(text: str, parse, ok, rule: str):
    """``parse(text)`` if ``ok`` holds for it, else an ``ArgumentTypeError`` saying it ``must be {rule}``."""
    value = parse(text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (``nan``/``inf`` refused)."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _checked(text, _float, lambda v: v > 0, "> 0")


def fraction(text: str) -> float:
    """A fraction strictly between 0 and 1."""
    return _checked(text, _float, lambda v: 0 < v < 1, "a fraction in (0, 1)")


def top_p(text: str) -> float:
    """A nucleus mass in (0, 1]."""
    return _checked(text, _float, lambda v: 0 < v <= 1, "in (0, 1]")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _checked(text, _int, lambda v: v >= 1, ">= 1")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _checked(text, _int, lambda v: v >= 0, ">= 0")


def limit(text: str) -> int:
    """A number of contexts: an integer >= 0, where 0 means all (the same in every command)."""
    return _checked(text, _int, lambda v: v >= 0, ">= 0 (0 means all)")


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32 - 1]."""
    return _checked(text, _int, lambda v: 0 <= v <= MAX_SEED, "an integer in [0, 2**32 - 1]")


def check_out_writable(path, flag: str = "--out") -> None:
    """Raise :class:`InputError` unless the output folder ``path`` can be written; creates nothing.

    Run before any compute. The folder may not exist yet (it is then made by the command); the
    nearest existing folder above it must be writable, since runs are written beside the folder
    first and moved into place. An existing ``path`` must be a folder and writable itself.
    """
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {path}: exists and is not a folder")
    above = Path(os.path.abspath(p)).parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise InputError(f"{flag} {path}: {above} is a file, not a folder")
    for folder in ([above, p] if p.is_dir() else [above]):
        try:
            fd, probe = tempfile.mkstemp(prefix=".varylm-write-check-", dir=folder)
        except OSError as err:
            raise InputError(f"{flag} {path}: cannot write in {folder} ({err.strerror or err})") from None
        os.close(fd)
        os.unlink(probe)


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False,
                        model_help: str = "Hub id, local folder, .gguf file, or smollm2-gguf (offline)"):
    """The model options of every command that loads one (read by ``commands.eval._load``); returns the group."""
    m = parser.add_argument_group("model")
    m.add_argument("--model", required=required, help=model_help)
    m.add_argument("--gguf-file", help="GGUF file name inside --model (folder or Hub repo)")
    m.add_argument("--adapter", help="PEFT adapter (Hub id or folder) on top of --model")
    m.add_argument("--revision", help="Hub revision of the model and adapter")
    m.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    m.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="model dtype (default: the checkpoint's)")
    m.add_argument("--trust-remote-code", action="store_true", help="run code from the model repo (off by default)")
    m.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle weights (pytorch_model.bin) when a model has no safetensors (off by default)")
    return m
