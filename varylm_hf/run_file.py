"""The run-file schema (``varylm_run.json``) and the evaluation summary the cards read.

Both training recipes describe a run in one file next to the checkpoint, :class:`RunFile`: ``save_var_run``
(full fine-tuning, ``recipe="var"``) and ``save_adapter`` (LoRA/QLoRA adapters, ``recipe="sft"`` or ``"var"``)
build one and call :meth:`RunFile.write`; :mod:`varylm_hf.hub` reads it back (:meth:`RunFile.read`) to render the card it uploads
(:mod:`varylm_hf.cards`). Every key is optional; known keys are typed and checked, any other key is kept
(:attr:`RunFile.extra`)::

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

A malformed file is refused with a one-line :class:`~varylm_hf.errors.InputError` naming the file and the key.
Every name here is also importable from :mod:`varylm_hf.cards` (and the file names from :mod:`varylm_hf.hub`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import InputError
from .secrets import redact_obj

__all__ = [
    "RUN_CONFIG_FILE",
    "EVAL_SUMMARY_FILE",
    "TRAINING_ARGS_FILE",
    "HPARAM_KEYS",
    "RunFile",
    "read_json",
    "read_run_config",
    "read_eval_summary",
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
