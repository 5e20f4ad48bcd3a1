"""Hub failures as one-line errors: :class:`HubError` and the context manager that maps huggingface_hub's errors.

A refused connection, a timeout or an HTTP error becomes one line naming the action, the repo, the endpoint, what
failed (the stage of a push: repo creation, upload, commit) and what it left on the Hub; any token is scrubbed
from the message. The CLI prints it and exits 2 (docs/hub.md, "When the Hub is unreachable or fails").
"""

from __future__ import annotations

import contextlib
import os
import re

from .errors import InputError, VarylmError
from .secrets import redact_text

__all__ = ["HubError", "connection_failure_reason", "endpoint_url", "hub_errors"]


class HubError(VarylmError):
    """The Hub could not be reached or refused a request (one-line message; the CLI exits 2)."""


def endpoint_url(endpoint: str | None) -> str | None:
    """Explicit endpoint, else ``HF_ENDPOINT`` read now, else None (huggingface_hub's default)."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or None
    return value.rstrip("/") if value else None


def _scrub(text: str, token: str | None) -> str:
    """Remove any token (given or from the environment, or hf_... shaped) from a message."""
    text = redact_text(text, extra=(token,) if token else ())
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "hf_***", text)


def connection_failure_reason(err: BaseException | None) -> str | None:
    """A short reason when ``err`` (or what caused it) is a network failure, else None.

    "connection refused", "cannot connect", "timed out" or "connection lost"; used for the Hub's errors here and
    for the model loader's first look-up (:mod:`varylm_hf.modeling`).
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = type(err).__name__
        if isinstance(err, ConnectionRefusedError) or "ConnectError" in name or "ConnectionError" in name:
            text = str(err).lower()
            return "connection refused" if "refused" in text or isinstance(err, ConnectionRefusedError) \
                else "cannot connect"
        if "Timeout" in name or isinstance(err, TimeoutError):
            return "timed out"
        if name in ("RemoteProtocolError", "ReadError", "NetworkError", "WriteError"):
            return "connection lost"
        err = err.__cause__ or err.__context__
    return None


def _stage(url: str) -> str:
    if "/commit/" in url:
        return "commit"
    if "/preupload/" in url or "/info/lfs/" in url or "/_lfs/" in url:
        return "upload"
    if "/repos/create" in url:
        return "repo creation"
    if "/resolve/" in url:
        return "download"
    return "request"


@contextlib.contextmanager
def hub_errors(action: str, repo: str, endpoint: str | None, token: str | None, state: dict | None = None):
    """Turn network and HTTP failures of huggingface_hub into one-line :class:`HubError`.

    For a push, ``state["note"]`` (updated by the caller as it goes) says what the failure left on the
    Hub; it defaults to "the repo was not changed".
    """
    from huggingface_hub import constants  # heavy: huggingface_hub; the CLI parser imports this module
    from huggingface_hub.errors import (  # heavy: huggingface_hub; the CLI parser imports this module
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = endpoint_url(endpoint) or constants.ENDPOINT
    state = {} if state is None else state
    try:
        yield
    except (InputError, HubError):
        raise
    except LocalEntryNotFoundError as err:  # offline or unreachable while downloading
        reason = connection_failure_reason(err) or "offline mode or unreachable"
        raise HubError(_scrub(f"{action} {repo}: cannot reach the Hub at {where} ({reason}) and no cached copy", token)) from err
    except RevisionNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: revision not found on {where}", token)) from err
    except RepositoryNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: repository not found on {where} "
                              "(check the id, the repo type and your token)", token)) from err
    except EntryNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: file not found on {where}: {str(err).splitlines()[0]}", token)) from err
    except HfHubHTTPError as err:
        unchanged = state.get("note", "; the repo was not changed") if action == "push" else ""
        status = getattr(err.response, "status_code", None)
        url = str(getattr(getattr(err.response, "request", None), "url", "") or "")
        if status in (401, 403):
            msg = (f"{action} {repo}: the Hub at {where} refused the token (HTTP {status}): set HF_TOKEN to a "
                   f"token with write access or run `hf auth login`{unchanged}")
        else:
            msg = (f"{action} {repo}: the Hub at {where} answered HTTP {status} during {_stage(url)}{unchanged}; "
                   "local files are untouched, retry later")
        raise HubError(_scrub(msg, token)) from err
    except Exception as err:
        unchanged = state.get("note", "; the repo was not changed") if action == "push" else ""
        reason = connection_failure_reason(err)
        if reason is None:
            raise
        raise HubError(_scrub(f"{action} {repo}: cannot reach the Hub at {where} ({reason}){unchanged}; "
                              "local files are untouched, retry when it is reachable", token)) from err
