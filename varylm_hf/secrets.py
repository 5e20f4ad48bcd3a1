"""Keep secrets (Hub tokens) out of everything varylm-hf writes: run files, cards, summaries, messages.

One place decides what a secret is:

* the value of a secret-bearing argument: ``--hub_token``/``--hub-token``, ``--token``, ``--hf_token``/
  ``--hf-token``, ``--push_to_hub_token``, ``--api_key``/``--api-key`` (``--flag VALUE`` and ``--flag=VALUE``);
* anything shaped like a Hugging Face token (``hf_`` followed by 20 or more letters and digits);
* the value of the ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN`` / ``HF_API_TOKEN`` environment variables
  (read when a function runs, so a token set later is still caught);
* in a mapping, the value of a key such as ``token``, ``hub_token``, ``hf_token``, ``api_key`` or ``password``.

Each is replaced by :data:`REDACTED`. :func:`redact_argv` works on an argument list,
:func:`redact_text` on a command line or any other text, :func:`redact_obj` on JSON-like data.
"""

from __future__ import annotations

import os
import re
import shlex

__all__ = ["REDACTED", "detach_hub_token", "SECRET_FLAGS", "SECRET_ENV_VARS", "redact_argv", "redact_text", "redact_obj",
           "contains_secret", "secret_values", "redact_command"]

#: What a secret is replaced with.
REDACTED = "<redacted>"
#: Command-line options whose value is a secret.
SECRET_FLAGS = ("--hub_token", "--hub-token", "--token", "--hf_token", "--hf-token", "--push_to_hub_token",
                "--push-to-hub-token", "--api_key", "--api-key")
#: Environment variables holding a Hub token.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
_FLAG_ALT = "|".join(re.escape(f[2:]) for f in sorted(SECRET_FLAGS, key=len, reverse=True))
# --flag VALUE / --flag=VALUE, the value optionally quoted (as shlex.join writes it)
_FLAG_RE = re.compile(r"(?<![\w-])(--(?:" + _FLAG_ALT + r"))(=|\s+)('[^']*'|\"[^\"]*\"|[^\s'\"]+)")
_SECRET_KEY_RE = re.compile(r"^((hub|hf|push_to_hub|access|auth|api)_)?token$|^api_?key$|^password$|^secret$",
                            re.IGNORECASE)
_MIN_ENV_LEN = 8  # a shorter env value is not searched for (it would redact ordinary words)


def secret_values() -> list[str]:
    """The token values set in the environment now (longest first; very short values are ignored)."""
    values = {os.environ.get(name, "").strip() for name in SECRET_ENV_VARS}
    return sorted((v for v in values if len(v) >= _MIN_ENV_LEN), key=len, reverse=True)


def _scrub(text: str, extra: tuple[str, ...] = ()) -> str:
    for value in [*(e for e in extra if e and len(e) >= 4), *secret_values()]:
        text = text.replace(value, REDACTED)
    return _TOKEN_RE.sub(REDACTED, text)


def redact_argv(argv, extra: tuple[str, ...] = ()) -> list[str]:
    """A copy of an argument list with every secret replaced by :data:`REDACTED`.

    ``--hub_token X`` and ``--hub_token=X`` (and the other :data:`SECRET_FLAGS`) lose their value;
    any argument holding a token-shaped string or an environment token loses that part.
    ``extra`` names further literal secrets.
    """
    out: list[str] = []
    hide_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _value = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(_scrub(arg, extra))
    return out


def redact_text(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` (a command line, a card, a message) with every secret replaced by :data:`REDACTED`."""
    if not text:
        return text
    text = _FLAG_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", str(text))
    return _scrub(text, extra)


def redact_command(command: str) -> str:
    """A shell command line (as ``shlex.join`` writes it) with its secrets redacted."""
    try:
        return shlex.join(redact_argv(shlex.split(command)))
    except ValueError:  # unbalanced quotes: fall back to the text rules
        return redact_text(command)


def redact_obj(obj, extra: tuple[str, ...] = ()):
    """A copy of JSON-like data (dicts, lists, strings) with every secret redacted.

    Strings go through :func:`redact_text`; a string value under a key such as ``hub_token``,
    ``token``, ``api_key`` or ``password`` is replaced outright (``None`` and placeholders such as
    ``"<HUB_TOKEN>"`` are kept).
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if isinstance(key, str) and _SECRET_KEY_RE.search(key) and isinstance(value, str) and value \
                    and not (value.startswith("<") and value.endswith(">")):
                out[key] = REDACTED
            else:
                out[key] = redact_obj(value, extra)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, extra) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, extra)
    return obj


def contains_secret(text: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether :func:`redact_text` would change ``text``."""
    return redact_text(text, extra) != text


def detach_hub_token(args) -> None:
    """Move ``args.hub_token`` (TrainingArguments) into the process environment before a Trainer is built.

    The Trainer pickles its arguments into every ``checkpoint-*/training_args.bin``: a token kept on
    ``args`` would be written to disk with each checkpoint. ``HF_TOKEN`` (this process only, never a
    file) still authenticates ``push_to_hub``.
    """
    token = getattr(args, "hub_token", None)
    if token:
        os.environ.setdefault("HF_TOKEN", token)
        args.hub_token = None
