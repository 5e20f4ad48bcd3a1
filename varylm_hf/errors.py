"""Errors raised for bad user input: one line naming the file, row or argument."""

from __future__ import annotations

__all__ = ["VarylmError", "InputError"]


class VarylmError(Exception):
    """Base class of varylm-hf's user-facing errors (the CLI prints them without a traceback)."""


class InputError(VarylmError, ValueError):
    """Bad input: the message names the file/row/argument and what was expected."""
