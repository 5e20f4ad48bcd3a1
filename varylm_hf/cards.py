"""Every card varylm-hf writes (models, adapters, datasets), each rendered from its template in ``varylm_hf/templates/``.

The cards are filled from the run file (:class:`~varylm_hf.run_file.RunFile`, ``varylm_run.json``) and the
evaluation summary (``eval_summary.json``), whose schemas are in :mod:`varylm_hf.run_file`; their names are
importable from here too. Each card is a :class:`huggingface_hub.ModelCard` made by ``ModelCard.from_template``:
its YAML header is a ``ModelCardData`` (base_model, datasets, library_name, license, tags, and a ``model-index``
of ``EvalResult`` s: mean (sampled or exact) TVD, exact TVD when both were measured, oracle TVD), its body the
template filled with the run's values:

==========================  =============================  ==================================================
template                    renderer                       the card
==========================  =============================  ==================================================
``model_card.md``           :func:`render_model_card`,     the README.md ``varylm push`` uploads for a model
                            :func:`render_folder_card`     or an adapter (from a run folder)
``var_run_card.md``         :func:`render_var_card`        the README.md ``save_var_run`` writes beside a
                                                           full checkpoint
``adapter_run_card.md``     :func:`render_adapter_card`    the README.md ``save_adapter`` writes beside an
                                                           adapter (peft's YAML header amended)
``dataset_card.md``         :func:`render_dataset_card`    the README.md of a dataset folder (``varylm data
                                                           build``, ``varylm push`` of a dataset)
==========================  =============================  ==================================================

The evaluation command line in every card is :func:`eval_command`, which ``varylm eval run`` parses.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from .data.labels import LABEL_MODES
from .data.words import describe_word_rule
from .errors import InputError
from .modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID
from .options import TRAINING_DEFINITIONS, WORD_DEFINITIONS
from .run_file import (
    EVAL_SUMMARY_FILE,
    HPARAM_KEYS,
    RUN_CONFIG_FILE,
    TRAINING_ARGS_FILE,
    RunFile,
    read_eval_summary,
    read_json,
    read_run_config,
)
from .secrets import redact_text

__all__ = [
    "RUN_CONFIG_FILE",
    "EVAL_SUMMARY_FILE",
    "TRAINING_ARGS_FILE",
    "HPARAM_KEYS",
    "TEMPLATES",
    "RunFile",
    "read_json",
    "read_run_config",
    "read_eval_summary",
    "check_hub_id",
    "card_base_model",
    "eval_command",
    "render_model_card",
    "render_folder_card",
    "render_var_card",
    "render_dataset_card",
    "render_adapter_card",
]

#: The card templates (package data, ``varylm_hf/templates/``): card -> file name.
TEMPLATES = {"hub": "model_card.md", "var_run": "var_run_card.md", "adapter_run": "adapter_run_card.md",
             "dataset": "dataset_card.md"}
#: Card text of the word-probability definitions: the one declaration in varylm_hf.options.
_WORD_PROB = {name: WORD_DEFINITIONS[name] for name in TRAINING_DEFINITIONS}
_RECIPES = {
    "var": "word-level soft-label cross-entropy, -sum_w p(w∣c) log q(w∣c)",
    "ft-orig": "word-level cross-entropy on the corpus word",
    "ft-maj": "word-level cross-entropy on the majority human answer",
    "sample-k": "word-level cross-entropy on k sampled human answers",
    "sft": "supervised fine-tuning on (prompt, human answer) pairs, one pair per answer (loss on the answer only)",
}
_TAGS = ["varylm", "cloze", "human-label-variation", "next-word-prediction"]


# ------------------------------------------------------------------------------------ helpers
def check_hub_id(value: str, what: str = "repo id") -> str:
    """Return ``value`` if it is a valid Hub repo id (``name`` or ``namespace/name``), else raise InputError."""
    # heavy: huggingface_hub; hub (so the CLI) imports this module
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


def card_base_model(base: str | None) -> str | None:
    """The base model as the card names it: a Hub id (the offline GGUF alias -> the model it was quantised from)."""
    if base == OFFLINE_MODEL:
        base = OFFLINE_MODEL_HUB_ID
    return check_hub_id(base, "base model") if base else None


def _is_hub_dataset_id(value: str | None) -> bool:
    """Whether ``value`` reads as a Hub dataset id (``namespace/name``), not a local path or a bare name."""
    try:
        return bool(value) and value.count("/") == 1 and check_hub_id(value) == value
    except InputError:
        return False


def _fmt(value) -> str:
    """A table cell of a value: ``code`` for text, 4 significant digits for floats, "not recorded" for None."""
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _cell(f"`{value}`" if isinstance(value, str) else str(value))


def _cell(text: str) -> str:
    """Escape ``|`` so that free text cannot break a Markdown table row."""
    return text.replace("|", "\\|")


def _as_run(run) -> RunFile:
    if isinstance(run, RunFile):
        return run
    return RunFile.from_dict(run or {}, "run")


def _render(card: str, card_data, **values) -> str:
    """``ModelCard.from_template(card_data, template_path=<the card's template>, **values)`` as text."""
    from huggingface_hub import ModelCard  # heavy: huggingface_hub; hub (so the CLI) imports this

    with resources.as_file(resources.files(__package__) / "templates" / TEMPLATES[card]) as path:
        return str(ModelCard.from_template(card_data, template_path=str(path), word_rule=describe_word_rule(),
                                           **values))


def render_dataset_card(header: Mapping, **values) -> str:
    """The dataset card: ``header`` (the YAML metadata: license, configs, dataset_info...) as a ``DatasetCardData``
    and ``values`` (split table, normaliser settings, counts, source) filling ``templates/dataset_card.md``.

    :func:`varylm_hf.data.hub_folder.render_card` computes both from the splits.
    """
    from huggingface_hub import DatasetCard, DatasetCardData  # heavy: huggingface_hub; hub (so the CLI) imports this

    with resources.as_file(resources.files(__package__) / "templates" / TEMPLATES["dataset"]) as path:
        card = DatasetCard.from_template(DatasetCardData(**header), template_path=str(path), **values)
    return str(card) if str(card).endswith("\n") else f"{card}\n"


def eval_command(model: str, name: str, *, adapter: str | None = None, dataset: str | None = None) -> str:
    """The ``varylm eval run`` command line a card shows (``--dataset`` only for a Hub dataset id)."""
    parts = ["varylm", "eval", "run", "--model", model] + (["--adapter", adapter] if adapter else [])
    if _is_hub_dataset_id(dataset):  # evaluate on the data it was trained on
        parts += ["--dataset", dataset]
    return shlex.join(parts + ["--mode", "both", "--out", f"runs/eval/{name}"])


def _label_text(run: RunFile) -> str | None:
    if run.recipe == "sft" and run.label_mode == "all":
        return "every human answer, one (prompt, answer) training row per answer (the paper's data augmentation)"
    return LABEL_MODES[run.label_mode].description if run.label_mode in LABEL_MODES else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------ Hub card
def _eval_results(summary: dict, dataset: str):
    """The ``model-index``: mean TVD (sampled, or exact for an exact-only run), exact TVD when both, oracle TVD."""
    from huggingface_hub import EvalResult  # heavy: huggingface_hub; hub (so the CLI) imports this

    common = dict(task_type="text-generation", task_name="Next-word prediction (human cloze distribution)",
                  dataset_type=dataset, dataset_name="Provo cloze norms", dataset_split=summary.get("split") or "test")
    results = [
        EvalResult(metric_type="tvd", metric_name="mean TVD (lower is better)",
                   metric_value=float(summary["mean_tvd"]), **common),
        EvalResult(metric_type="tvd", metric_name="oracle TVD (human split-half)",
                   metric_value=float(summary["oracle_tvd"]), **common),
    ]
    exact = summary.get("mean_tvd_exact")
    if "sampled" in summary and _is_number(exact):
        results.insert(1, EvalResult(metric_type="tvd", metric_name="exact TVD (word probabilities)",
                                     metric_value=float(exact), **common))
    return results


def _evaluation_values(summary: dict | None) -> dict:
    """The template values of the card's evaluation section (empty summary: the "not provided" line)."""
    if not summary:
        return {"summary": None, "eval_file": EVAL_SUMMARY_FILE}
    sd = summary.get("sd_tvd")
    if sd is None and isinstance(summary.get("sampled"), dict):  # varylm eval's summary.json
        sd = (summary["sampled"].get("tvd") or {}).get("sd")
    estimator = summary.get("estimator") or ("sampled" if "sampled" in summary else "exact" if "exact" in summary
                                             else None)
    extras = [(key, summary.get(key)) for key in ("mean_tvd_exact", "failure_rate", "human_entropy")]
    return {"summary": summary, "sd_tvd": sd if isinstance(sd, (int, float)) else None, "estimator": estimator,
            "eval_seeds": summary["seeds"] if isinstance(summary.get("seeds"), list) else None,
            "extras": [(key, value) for key, value in extras if isinstance(value, (int, float))]}


def render_model_card(
    repo_id: str,
    *,
    run: RunFile | Mapping | None = None,
    summary: dict | None = None,
    adapter_config: dict | None = None,
    base_model: str | None = None,
) -> str:
    """Render the README.md of a varylm model or adapter repo (what ``varylm push`` uploads; ``model_card.md``).

    YAML: license, base_model, library_name (transformers or peft), pipeline_tag, tags, datasets and a
    ``model-index`` holding mean TVD and oracle TVD (and the exact TVD of a ``--mode both`` run) when ``summary``
    is given. Body: what the model is, the recipe (loss, label mode, word-probability definition), data and split,
    hyper-parameters, seeds, evaluation, how to use (with :func:`eval_command`), intended use, limitations and
    citations. ``run`` is a :class:`RunFile` or its dict.
    """
    from huggingface_hub import ModelCardData  # heavy: huggingface_hub; hub (so the CLI) imports this

    run = _as_run(run)
    base = base_model or run.base_model
    is_adapter = adapter_config is not None
    dataset = run.training_data or "provo_cloze"
    data = ModelCardData(
        license="apache-2.0",
        base_model=base,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        tags=_TAGS + (["lora", "peft"] if is_adapter else []),
        datasets=[dataset] if _is_hub_dataset_id(dataset) else None,  # a local path is no Hub dataset
        model_name=repo_id,
        eval_results=_eval_results(summary, dataset) if summary else None,
    )
    targets = (adapter_config or {}).get("target_modules")
    name = repo_id.split("/")[-1]
    cli = (eval_command(str(base), name, adapter=repo_id, dataset=dataset) if is_adapter
           else eval_command(repo_id, name, dataset=dataset))
    return _render(
        "hub", data, name=name, repo_id=repo_id, base=base, run=run, is_adapter=is_adapter, adapter=adapter_config,
        targets=", ".join(sorted(targets)) if isinstance(targets, list) else targets, dataset=dataset,
        loss=run.loss or _RECIPES.get(run.recipe or "") or "not recorded", label_text=_label_text(run),
        word_prob=_WORD_PROB.get(run.word_prob_definition), seeds=run.all_seeds,
        hyperparameters=sorted((run.hyperparameters or {}).items()), eval_cli=cli, fmt=_fmt, cell=_cell,
        **_evaluation_values(summary),
    )


def render_folder_card(folder, repo_id: str, *, run_config=None, eval_summary=None, summary: dict | None = None,
                       adapter_config: dict | None = None, base_model: str | None = None) -> str:
    """:func:`render_model_card` for a run folder: its ``varylm_run.json`` (or ``run_config``) and evaluation.

    The evaluation is ``summary``, else ``eval_summary`` (a path; missing: InputError), else the folder's
    ``eval_summary.json`` when present. The base model is ``base_model``, else the run file's, else the
    adapter's ``base_model_name_or_path``, named by its Hub id (:func:`card_base_model`).
    """
    folder = Path(folder)
    run = RunFile.read(folder, run_config)
    if summary is None:
        summary = read_eval_summary(folder / EVAL_SUMMARY_FILE if eval_summary is None else eval_summary)
        if eval_summary is not None and summary is None:
            raise InputError(f"--eval-summary {eval_summary}: no such file")
    base = base_model or run.base_model or (adapter_config or {}).get("base_model_name_or_path")
    return render_model_card(repo_id, run=run, summary=summary, adapter_config=adapter_config,
                             base_model=card_base_model(base))


# ------------------------------------------------------------------------------------ local cards
def render_var_card(run: RunFile, output_dir, *, dataset: str = "Provo cloze norms") -> str:
    """The README.md that ``save_var_run`` writes beside a checkpoint (``var_run_card.md``; secrets redacted).

    ``run`` needs ``base_model``, ``label_mode`` and ``varylm`` (VarTrainingArguments' L_Var options); ``dataset``
    names the training data in the text.
    """
    from huggingface_hub import ModelCardData  # heavy: huggingface_hub; hub (so the CLI) imports this

    data = ModelCardData(base_model=run.base_model, library_name="transformers", pipeline_tag="text-generation",
                         tags=["varylm", "human-label-variation", "cloze", "next-word-prediction"],
                         datasets=[run.training_data] if _is_hub_dataset_id(run.training_data) else None)
    name = Path(output_dir).name
    card = _render("var_run", data, name=name, run=run, dataset=dataset, view=LABEL_MODES[run.label_mode],
                   varylm=run.varylm or {}, metrics=sorted((run.metrics or {}).items()),
                   eval_cli=eval_command(str(output_dir), name, dataset=run.training_data))
    return redact_text(card)  # never a token (--hub_token, HF_TOKEN) on disk


def render_adapter_card(peft_card: str, run: RunFile, output_dir, *, versions: Mapping[str, str]) -> str:
    """The README.md that ``save_adapter`` writes (``adapter_run_card.md``; secrets redacted).

    peft's card (``peft_card``, its text) with base_model, library_name and tags set, and varylm's body;
    ``versions`` maps library -> version.
    """
    from huggingface_hub import ModelCard  # heavy: huggingface_hub; hub (so the CLI) imports this

    data = ModelCard(peft_card).data
    base = run.base_model
    data.base_model = base
    data.library_name = "peft"
    tags = [t for t in (data.tags or []) if not t.startswith("base_model:")]  # peft tags the local path
    data.tags = sorted(set(tags + [f"base_model:adapter:{base}", "varylm-hf", "lora", "sft", "human-variability"]))
    labels = _label_text(run)  # the sft/all text already says one row per answer
    if not (run.recipe == "sft" and run.label_mode == "all"):
        labels = "; ".join(filter(None, (labels, "one row per human answer" if run.label_mode == "all"
                                         else "one row per context")))
    card = _render("adapter_run", data, run=run, labels=labels, hp=run.hyperparameters or {},
                   extra=run.recipe_extra or {}, versions=dict(versions),
                   eval_cli=eval_command(run.base_model, Path(output_dir).name, adapter=str(output_dir)))
    return redact_text(card)
