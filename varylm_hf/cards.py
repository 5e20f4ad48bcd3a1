"""The run-file schema (``varylm_run.json``) and every model card varylm-hf writes.

Both training recipes describe a run in one file next to the checkpoint, :class:`RunFile`:
:func:`varylm_hf.trainer.save_var_run` (full fine-tuning, ``recipe="var"``) and
:func:`varylm_hf.sft.save_adapter` (LoRA/QLoRA adapters, ``recipe="sft"`` or ``"var"``) build one and call
:meth:`RunFile.write`; :mod:`varylm_hf.hub` reads it back (:meth:`RunFile.read`) to render the card it uploads.
Every key is optional; known keys are typed and checked, any other key is kept (:attr:`RunFile.extra`)::

    {"base_model": "openai-community/gpt2",          # Hub id of the model that was fine-tuned
     "recipe": "var",                                 # var | ft-orig | ft-maj | sample-k | sft | free text
     "loss": "soft-label word cross-entropy",         # optional, free text (default: from the recipe)
     "label_mode": "all",                             # all | corpus | majority | sample_k (data.labels.LABEL_MODES)
     "k": null,                                       # answers sampled per context (label_mode sample_k)
     "word_prob_definition": "paper",                 # paper | eow (end-of-word corrected)
     "dataset": "varylm/provo_cloze",                 # Hub id or folder of the training data
     "data": "provo",                                 # the instruct recipe's data name (read when "dataset" is absent)
     "split": "paper",                                # paper | random | free text
     "seed": 42,                                      # int, or "seeds": [42, 123, 456]
     "hyperparameters": {"learning_rate": 1e-05, "per_device_train_batch_size": 16, "num_train_epochs": 3},
     # written by save_var_run: "first_token", "word_rule" (str), "varylm" (VarTrainingArguments' L_Var options),
     #   "num_train_contexts" (int), "metrics", "versions", "training_args" (objects), "command" (str),
     #   "hub_model_id" (str) and anything its extra_config adds (e.g. "script");
     # written by save_adapter: "train_rows" (int, augmented rows) and "extra" (object: QLoRA compute dtype,
     #   contexts per micro-batch, GGUF source...)
    }

``eval_summary.json`` (a copy of the ``summary.json`` that ``varylm eval run --out DIR`` writes, or pass its
path as ``eval_summary=``), read by :func:`read_eval_summary`::

    {"mean_tvd": 0.61, "oracle_tvd": 0.48,            # required when the file exists, in [0, 1]
     "n_contexts": 536, "seeds": [42, 123, 456],      # optional, shown in the card
     "sd_tvd": 0.01,                                  # optional (else read from sampled.tvd.sd)
     "split": "test", "num_samples": 40, "estimator": "sampled",
     "mean_tvd_exact": 0.58, "failure_rate": 0.02, "human_entropy": 2.1}

Cards: :func:`render_model_card` (the README.md that ``varylm push`` uploads for a model or an adapter, with a
``model-index``; :func:`render_folder_card` renders it from a run folder), :func:`render_var_card` (the README.md
that ``save_var_run`` writes beside a checkpoint) and :func:`render_adapter_card` (the README.md that
``save_adapter`` writes, peft's YAML header amended). The evaluation command line in every card is
:func:`eval_command`, which ``varylm eval run`` parses. A malformed file is refused with a one-line
:class:`~varylm_hf.errors.InputError` naming the file and the key.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .data.labels import LABEL_MODES
from .data.words import describe_word_rule
from .errors import InputError
from .modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID
from .options import TRAINING_DEFINITIONS, WORD_DEFINITIONS
from .secrets import redact_obj, redact_text

__all__ = [
    "RUN_CONFIG_FILE",
    "EVAL_SUMMARY_FILE",
    "TRAINING_ARGS_FILE",
    "HPARAM_KEYS",
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
    "render_adapter_card",
]

#: Run description written next to a checkpoint by the training scripts (:class:`RunFile`).
RUN_CONFIG_FILE = "varylm_run.json"
#: Evaluation summary (``mean_tvd``, ``oracle_tvd``, ...) put next to a checkpoint before pushing.
EVAL_SUMMARY_FILE = "eval_summary.json"
#: ``TrainingArguments.to_dict()`` as JSON; used for hyper-parameters when varylm_run.json has none.
TRAINING_ARGS_FILE = "training_args.json"
#: The ``training_args.json`` keys that become the card's hyper-parameters.
HPARAM_KEYS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "max_steps", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "seed", "bf16", "fp16",
)
#: Card text of the word-probability definitions: the one declaration in varylm_hf.options.
_WORD_PROB = {name: WORD_DEFINITIONS[name] for name in TRAINING_DEFINITIONS}
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


# ------------------------------------------------------------------------------------ helpers
def read_json(path) -> dict:
    """Read a JSON object from ``path``; a one-line InputError naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def check_hub_id(value: str, what: str = "repo id") -> str:
    """Return ``value`` if it is a valid Hub repo id (``name`` or ``namespace/name``), else raise InputError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # light; kept out of package import

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


# ------------------------------------------------------------------------------------ run file
def _key(kind: str, json_key: str | None = None):
    """A RunFile field: ``kind`` is how it is checked (str, int, object, ints); ``json_key`` its key if not its name."""
    return field(default=None, metadata={"kind": kind, "key": json_key})


def _bad_type(value, kind: str) -> bool:
    if kind == "str":
        return not isinstance(value, str)
    if kind == "int":
        return not isinstance(value, int) or isinstance(value, bool)
    if kind == "object":
        return not isinstance(value, dict)
    return not (isinstance(value, list) and all(isinstance(s, int) for s in value))  # "ints"


_KIND_TEXT = {"int": "an integer", "object": "an object", "ints": "a list of integers"}


@dataclass
class RunFile:
    """The contents of ``varylm_run.json`` (schema in the module docstring): known keys typed, others in ``extra``.

    Build one with :meth:`from_dict` (checks every known key) or with keyword arguments; :meth:`to_dict` gives
    back the keys that were read or set, in their order (a key read as ``null`` stays ``null``; a field never
    set is left out). ``recipe_extra`` is the JSON key ``"extra"`` of the instruct recipe.
    """

    base_model: str | None = _key("str")
    recipe: str | None = _key("str")
    loss: str | None = _key("str")
    label_mode: str | None = _key("str")
    k: int | None = _key("int")
    word_prob_definition: str | None = _key("str")
    dataset: str | None = _key("str")
    data: str | None = _key("str")
    split: str | None = _key("str")
    seed: int | None = _key("int")
    seeds: list[int] | None = _key("ints")
    first_token: str | None = _key("str")
    word_rule: str | None = _key("str")
    hyperparameters: dict | None = _key("object")
    varylm: dict | None = _key("object")
    num_train_contexts: int | None = _key("int")
    train_rows: int | None = _key("int")
    metrics: dict | None = _key("object")
    command: str | None = _key("str")
    versions: dict | None = _key("object")
    training_args: dict | None = _key("object")
    hub_model_id: str | None = _key("str")
    recipe_extra: dict | None = _key("object", "extra")
    #: keys the schema does not know (kept so that nothing is lost)
    extra: dict = field(default_factory=dict)
    #: the keys in the order they were read (to_dict keeps it)
    order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @staticmethod
    def _schema() -> dict:
        """JSON key -> dataclass field, for the typed keys."""
        return {f.metadata.get("key") or f.name: f for f in fields(RunFile) if "kind" in f.metadata}

    @classmethod
    def from_dict(cls, data: Mapping, path=RUN_CONFIG_FILE) -> RunFile:
        """Check and wrap a run description; ``path`` names the file in the one-line InputError of a bad key."""
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: expected a JSON object")
        schema = cls._schema()
        known, extra = {}, {}
        for key, value in data.items():
            spec = schema.get(key)
            if spec is None:
                extra[key] = value
                continue
            kind = spec.metadata["kind"]
            if value is not None and _bad_type(value, kind):
                got = f", got {type(value).__name__}" if kind == "str" else ""
                raise InputError(f"{path}: {key!r} must be {_KIND_TEXT.get(kind, 'a string')}{got}")
            known[spec.name] = value
        return cls(**known, extra=extra, order=tuple(data))

    @classmethod
    def read(cls, folder, path=None) -> RunFile:
        """Read ``path`` (default ``<folder>/varylm_run.json``); empty when absent.

        Hyper-parameters (and the seed) fall back to ``<folder>/training_args.json`` when the run file has
        none. Raises a one-line InputError on malformed JSON, a wrong type, or a given ``path`` that is missing.
        """
        folder = Path(folder)
        if path is not None and not Path(path).is_file():
            raise InputError(f"--run-config {path}: no such file")
        path = Path(path) if path is not None else folder / RUN_CONFIG_FILE
        run = cls.from_dict(read_json(path), path) if path.is_file() else cls()
        targs = folder / TRAINING_ARGS_FILE
        if not run.hyperparameters and targs.is_file():
            args = read_json(targs)
            run.hyperparameters = {k: args[k] for k in HPARAM_KEYS if k in args}
            if run.seed is None and isinstance(args.get("seed"), int):
                run.seed = args["seed"]
        return run

    def to_dict(self) -> dict:
        """The JSON object: keys read or set (in their order), then the unknown ones."""
        schema = self._schema()
        out: dict = {}
        for key in self.order:
            if key in schema:
                out[key] = getattr(self, schema[key].name)
            elif key in self.extra:
                out[key] = self.extra[key]
        for key, spec in schema.items():
            if key not in out and getattr(self, spec.name) is not None:
                out[key] = getattr(self, spec.name)
        out.update({k: v for k, v in self.extra.items() if k not in out and k not in schema})
        return out

    def redacted(self) -> RunFile:
        """A JSON-safe copy (values JSON cannot hold become strings) with every secret replaced."""
        return RunFile.from_dict(redact_obj(json.loads(json.dumps(self.to_dict(), default=str))))

    def write(self, folder) -> Path:
        """Write ``<folder>/varylm_run.json`` (secrets redacted, :mod:`varylm_hf.secrets`); returns its path."""
        path = Path(folder) / RUN_CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.redacted().to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @property
    def training_data(self) -> str | None:
        """The training data: ``dataset``, else the instruct recipe's ``data`` name."""
        return self.dataset or self.data

    @property
    def all_seeds(self) -> list[int] | None:
        """``seeds``, else ``[seed]``, else None."""
        return self.seeds or ([self.seed] if self.seed is not None else None)


def read_run_config(folder, path=None) -> dict:
    """:meth:`RunFile.read` as a plain dict (``{}`` when there is no run file nor training_args.json)."""
    return RunFile.read(folder, path).to_dict()


def read_eval_summary(path) -> dict | None:
    """Read an evaluation summary (``mean_tvd`` and ``oracle_tvd`` required); None when ``path`` is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    summary = read_json(path)
    for key in ("mean_tvd", "oracle_tvd"):
        value = summary.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise InputError(f"{path}: {key!r} must be a number in [0, 1], got {value!r}")
    return summary


def _as_run(run) -> RunFile:
    if isinstance(run, RunFile):
        return run
    return RunFile.from_dict(run or {}, "run")


# ------------------------------------------------------------------------------------ Hub card
def eval_command(model: str, name: str, *, adapter: str | None = None, dataset: str | None = None) -> str:
    """The ``varylm eval run`` command line a card shows (``--dataset`` only for a Hub dataset id)."""
    parts = ["varylm", "eval", "run", "--model", model] + (["--adapter", adapter] if adapter else [])
    if dataset and _is_hub_dataset_id(dataset):  # evaluate on the data it was trained on
        parts += ["--dataset", dataset]
    return shlex.join(parts + ["--mode", "both", "--out", f"runs/eval/{name}"])


def _label_text(run: RunFile) -> str | None:
    if run.recipe == "sft" and run.label_mode == "all":
        return "every human answer, one (prompt, answer) training row per answer (the paper's data augmentation)"
    return LABEL_MODES[run.label_mode].description if run.label_mode in LABEL_MODES else None


def _eval_results(summary: dict, dataset: str):
    from huggingface_hub import EvalResult  # light; imported when a card is rendered

    common = dict(task_type="text-generation", task_name="Next-word prediction (human cloze distribution)",
                  dataset_type=dataset, dataset_name="Provo cloze norms", dataset_split=summary.get("split") or "test")
    results = [
        EvalResult(metric_type="tvd", metric_name="mean TVD (lower is better)",
                   metric_value=float(summary["mean_tvd"]), **common),
        EvalResult(metric_type="tvd", metric_name="oracle TVD (human split-half)",
                   metric_value=float(summary["oracle_tvd"]), **common),
    ]
    exact = summary.get("mean_tvd_exact")
    if "sampled" in summary and isinstance(exact, (int, float)) and not isinstance(exact, bool):
        results.insert(1, EvalResult(metric_type="tvd", metric_name="exact TVD (word probabilities)",
                                     metric_value=float(exact), **common))
    return results


def _recipe_lines(run: RunFile, base: str | None, dataset: str, adapter_config: dict | None) -> list[str]:
    label_mode, wp, seeds = run.label_mode, run.word_prob_definition, run.all_seeds
    label_txt = _label_text(run)
    k_txt = f" (k = {run.k})" if run.k is not None else ""
    lines = [
        "## Training recipe",
        "",
        "| | |",
        "|---|---|",
        f"| Base model | {_fmt(base)} |",
        f"| Recipe | {_fmt(run.recipe)} |",
        f"| Loss | {_cell(run.loss or _RECIPES.get(run.recipe or '') or 'not recorded')} |",
        f"| Label mode | {_fmt(label_mode)}{' — ' + label_txt if label_txt else ''}{k_txt} |",
        f"| Word probability | {_fmt(wp)}{' — ' + _WORD_PROB[wp] if wp in _WORD_PROB else ''} |",
        f"| Training data | {_fmt(dataset)} (Provo Corpus predictability norms, Luke & Christianson 2018) |",
        f"| Split | {_fmt(run.split)} (by passage, never by context) |",
        f"| Seed(s) | {', '.join(str(s) for s in seeds) if seeds else 'not recorded'} |",
    ]
    if adapter_config is not None:
        targets = adapter_config.get("target_modules")
        if isinstance(targets, list):
            targets = ", ".join(sorted(targets))
        lines.append(f"| Adapter | {adapter_config.get('peft_type', 'LORA')} r={adapter_config.get('r')}, "
                     f"alpha={adapter_config.get('lora_alpha')}, dropout={adapter_config.get('lora_dropout')}, "
                     f"targets: {targets} |")
    lines += ["", "### Hyper-parameters", ""]
    if run.hyperparameters:
        lines += ["| name | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(run.hyperparameters.items())]
    else:
        lines.append("Not recorded (no `hyperparameters` in varylm_run.json and no training_args.json).")
    return lines


def _eval_lines(summary: dict | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if not summary:
        return lines + [f"No evaluation summary was provided at upload time (`{EVAL_SUMMARY_FILE}`)."]
    sd_value = summary.get("sd_tvd")
    if sd_value is None and isinstance(summary.get("sampled"), dict):  # varylm eval's summary.json
        sd_value = (summary["sampled"].get("tvd") or {}).get("sd")
    sd = f" ± {sd_value:.4f} (SD over seeds)" if isinstance(sd_value, (int, float)) else ""
    estimator = summary.get("estimator") or ("sampled" if "sampled" in summary else "exact" if "exact" in summary else None)
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
        f"| {summary.get('split') or 'test'} | {summary['mean_tvd']:.4f}{sd} | {summary['oracle_tvd']:.4f} | "
        f"{_fmt(summary.get('n_contexts'))} | {est} |",
    ]
    extra = [(key, summary.get(key)) for key in ("mean_tvd_exact", "failure_rate", "human_entropy")]
    extra = [(key, value) for key, value in extra if isinstance(value, (int, float))]
    return lines + ([""] + [f"* {key}: {value:.4f}" for key, value in extra] if extra else [])


def _usage_lines(repo_id: str, base: str | None, dataset: str, is_adapter: bool) -> list[str]:
    name = repo_id.split("/")[-1]
    lines = ["## How to use", "", "```python"]
    if is_adapter:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            f'model = PeftModel.from_pretrained(base, "{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        ]
        cli = eval_command(str(base), name, adapter=repo_id, dataset=dataset)
    else:
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        ]
        cli = eval_command(repo_id, name, dataset=dataset)
    return lines + ["```", "", "Evaluate it against the human answers with varylm-hf:", "", "```bash", cli, "```"]


def _closing_lines(run: RunFile) -> list[str]:
    return [
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
        f"* First token of plain contexts: {run.first_token or 'the document separator or the tokenizer BOS'} "
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


def render_model_card(
    repo_id: str,
    *,
    run: RunFile | Mapping | None = None,
    summary: dict | None = None,
    adapter_config: dict | None = None,
    base_model: str | None = None,
) -> str:
    """Render the README.md of a varylm model or adapter repo (what ``varylm push`` uploads).

    YAML: license, base_model, library_name (transformers or peft), pipeline_tag, tags, datasets and a
    ``model-index`` holding mean TVD and oracle TVD when ``summary`` is given. Body: what the model is,
    the recipe (loss, label mode, word-probability definition), data and split, hyper-parameters, seeds,
    evaluation, how to use (with :func:`eval_command`), intended use, limitations and citations.
    ``run`` is a :class:`RunFile` or its dict.
    """
    from huggingface_hub import ModelCardData  # light; imported when a card is rendered

    run = _as_run(run)
    base = base_model or run.base_model
    is_adapter = adapter_config is not None
    dataset = run.training_data or "provo_cloze"
    tags = ["varylm", "cloze", "human-label-variation", "next-word-prediction"] + (["lora", "peft"] if is_adapter else [])
    data = ModelCardData(
        license="apache-2.0",
        base_model=base,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        tags=tags,
        datasets=[dataset] if _is_hub_dataset_id(dataset) else None,  # a local path is no Hub dataset
        model_name=repo_id,
        eval_results=_eval_results(summary, dataset) if summary else None,
    )
    kind = "LoRA adapter for" if is_adapter else "Fine-tuned version of"
    base_txt = f"[{base}](https://huggingface.co/{base})" if base else "an unrecorded base model"
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"{kind} {base_txt}, trained with varylm-hf so that its "
        "next-word distribution matches the distribution of human next-word (cloze) answers, after "
        "*Learning to vary* (Groot, Lacunes & Ilia, 2025).",
        "",
        *_recipe_lines(run, base, dataset, adapter_config),
        "",
        *_eval_lines(summary),
        "",
        *_usage_lines(repo_id, base, dataset, is_adapter),
        "",
        *_closing_lines(run),
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


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
    """The README.md that :func:`varylm_hf.trainer.save_var_run` writes beside a checkpoint (secrets redacted).

    ``run`` needs ``base_model``, ``label_mode`` and ``varylm`` (VarTrainingArguments' L_Var options).
    """
    cfg = run.varylm or {}
    name = Path(output_dir).name
    view = LABEL_MODES[run.label_mode]
    target = view.description + (f", k = {cfg.get('label_k')}" if view.needs_k else "")
    wp_text = ("product of its token probabilities, eq. 3 of the paper" if run.word_prob_definition == "paper"
               else "product of its token probabilities times the probability that the next token ends the word")
    metric_lines = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                             for k, v in sorted((run.metrics or {}).items()))
    results = f"\n## Results\n\n| metric | value |\n|---|---|\n{metric_lines}\n" if run.metrics else ""
    hyper = "\n".join(f"| {k} | {v} |" for k, v in cfg.items())
    contexts = f", {run.num_train_contexts} training contexts" if run.num_train_contexts else ""
    command = run.command or "python examples/train_gpt2.py --model_name_or_path " + run.base_model
    card = f"""---
library_name: transformers
base_model: {run.base_model}
tags:
- varylm
- human-label-variation
- cloze
- next-word-prediction
pipeline_tag: text-generation
---

# {name}

{run.base_model} fine-tuned with **varylm-hf** so that its next-word distribution q(w|c) matches human
cloze answers p(w|c) (after "Learning to vary", Groot, Lacunes & Ilia, 2025).

## How it was trained

* Data: {dataset}, `{run.split}` split{contexts}
  (split by passage, never by context).
* Target: {target}.
* Loss: L_Var = mean over contexts of -sum_w p(w|c) log q(w|c), where q(w|c) is the probability of the
  whole word as it appears after the context, definition `{run.word_prob_definition}`
  ({wp_text}).
* Words scored with the `{cfg.get("scoring_strategy")}` strategy (prefix sharing; same loss as scoring each word alone).
* Every context starts with `{run.first_token or cfg.get("bos")}` (`--bos {cfg.get("bos")}`: the tokenizer's own BOS or the
  pretraining document separator, never a chat-role marker). Word outcome: {run.word_rule or describe_word_rule()}.
* Optimiser: {cfg.get("optim")} (weight decay {cfg.get("weight_decay")}), learning rate {cfg.get("learning_rate")},
  {cfg.get("per_device_train_batch_size")} contexts per device and step, {cfg.get("num_train_epochs")} epochs, seed {run.seed}.

| hyper-parameter | value |
|---|---|
{hyper}
{results}
## Reproduce

```bash
{command}
```

The run configuration is in `varylm_run.json`. Evaluate against the human answers (exact and sampled TVD) with

```bash
{eval_command(str(output_dir), name, dataset=run.training_data)}
```

## Limitations

Trained on {dataset} (English reading passages); the human distributions come from about 40 answers per
context, so low-probability words are estimated coarsely.
"""
    return redact_text(card)  # never a token (--hub_token, HF_TOKEN) on disk


def _adapter_body(run: RunFile, output_dir, versions: Mapping[str, str]) -> str:
    hp, extra = run.hyperparameters or {}, run.recipe_extra or {}
    rows = "one row per human answer" if run.label_mode == "all" else "one row per context"
    labels = _label_text(run)  # the sft/all text already says one row per answer
    labels = labels if run.recipe == "sft" and run.label_mode == "all" else "; ".join(filter(None, (labels, rows)))
    recipe = ("TRL SFTTrainer on the augmented rows" if run.recipe == "sft"
              else "the augmented-SFT objective with one row per context, each answer weighted by its count")
    quant = (f"QLoRA 4-bit nf4 + double quantisation, {extra.get('bnb_4bit_compute_dtype', 'bfloat16')} compute"
             if hp.get("qlora") else "no quantisation")
    text = (
        f"# varylm-hf adapter: {run.recipe} recipe, {run.label_mode} answers\n\n"
        f"LoRA adapter for `{run.base_model}` trained to reproduce the spread of human next-word answers "
        "(after *Learning to vary*, Groot, Lacunes & Ilia, 2025).\n\n"
        f"* Data: {run.data} cloze norms, `{run.split}` split (training passages only), "
        f"label mode `{run.label_mode}` ({labels}).\n"
        f"* Recipe: `{run.recipe}`: {recipe}; loss on the completion (answer + end of turn) only.\n"
        "* Prompt: the paper's instruction prompt (Appendix A) through the chat template, the same at evaluation.\n"
        f"* Hyper-parameters: lr {hp.get('learning_rate')}, batch {hp.get('batch_size')} {hp.get('batch_unit')}, "
        f"{hp.get('num_train_epochs')} epochs (max_steps {hp.get('max_steps')}), LoRA r={hp.get('lora_r')} "
        f"alpha={hp.get('lora_alpha')} dropout={hp.get('lora_dropout')} on "
        f"{', '.join(hp.get('lora_target_modules') or [])}, {quant}, seed {run.seed}.\n"
        "* Load: `PeftModel.from_pretrained(base_model, path)` or `AutoPeftModelForCausalLM.from_pretrained(path)`; "
        "all settings in `varylm_run.json`.\n"
        f"* Evaluate: `{eval_command(run.base_model, Path(output_dir).name, adapter=str(output_dir))}`.\n"
    )
    if extra.get("model_source"):
        text += (f"* Trained on `{extra['model_source']}`, a quantised copy of the base dequantised to float32: on the "
                 "Hub weights the adapter behaves nearly, not exactly, the same.\n")
    text += (
        "\n## Limitations\n\nTrained on English reading-study passages (Provo cloze norms, CC BY 4.0, Luke & "
        "Christianson 2018). Matching the human spread of answers there can lower accuracy on questions with one "
        "right answer (paper Appendix G; check with `varylm_hf.qa`).\n\n## Framework versions\n\n"
        + "".join(f"- {lib} {version}\n" for lib, version in versions.items())
    )
    return text


def render_adapter_card(peft_card: str, run: RunFile, output_dir, *, versions: Mapping[str, str]) -> str:
    """The README.md that :func:`varylm_hf.sft.save_adapter` writes: peft's card (``peft_card``, its text) with
    base_model, library_name and tags set and varylm's body; ``versions`` maps library -> version (secrets
    redacted)."""
    from huggingface_hub import ModelCard  # light; imported when a card is rendered

    card = ModelCard(peft_card)
    base = run.base_model
    card.data.base_model = base
    card.data.library_name = "peft"
    tags = [t for t in (card.data.tags or []) if not t.startswith("base_model:")]  # peft tags the local path
    card.data.tags = sorted(set(tags + [f"base_model:adapter:{base}", "varylm-hf", "lora", "sft", "human-variability"]))
    card.text = _adapter_body(run, output_dir, versions)
    return redact_text(str(card))
