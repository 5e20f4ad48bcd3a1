"""varylm_hf.cards: the run-file schema (RunFile) and the cards rendered from a trainer and an adapter run folder."""

from __future__ import annotations

import json
import shlex

import pytest

from varylm_hf import cards
from varylm_hf.cards import RunFile
from varylm_hf.cli import make_parser
from varylm_hf.data.labels import LABEL_MODES
from varylm_hf.errors import InputError

from conftest import make_tiny_chat_tokenizer, make_tiny_llama, make_tiny_word_tokenizer, tiny_gpt2

TOKEN = "hf_" + "Zq7" * 10  # token-shaped: redacted wherever it appears

RUN = {
    "recipe": "var", "label_mode": "sample_k", "k": 3, "word_prob_definition": "eow", "seed": 7,
    "first_token": "<|endoftext|>", "hyperparameters": {"learning_rate": 0.01}, "base_model": "me/base",
    "split": "paper", "num_train_contexts": None, "metrics": {"eval_loss": 4.5}, "command": "python train.py",
    "dataset": "me/provo_cloze", "hub_model_id": "me/m", "train_rows": 9, "seeds": [1, 2],
    "extra": {"contexts_per_micro_batch": 2},  # the instruct recipe's own "extra" key
    "script": {"output_dir": "runs/x", "n": [1, 2]}, "custom": "kept",  # keys the schema does not know
}


def _eval_args(line: str):
    """Parse a card's ``varylm ...`` line with the real CLI parser (argparse exits if it rejects it)."""
    assert line.startswith("varylm eval run "), line
    return make_parser().parse_args(shlex.split(line)[1:])


def _command_lines(text: str) -> list[str]:
    """The command lines of a card: lines of a bash block, or the adapter card's ``Evaluate: `...` `` item."""
    lines = [line.split("Evaluate: `", 1)[-1].strip().rstrip(".").rstrip("`") for line in text.splitlines()]
    return [line for line in lines if line.startswith("varylm ")]


# ------------------------------------------------------------------------------------ the run file
def test_run_file_round_trip_keeps_every_key_in_order(tmp_path):
    run = RunFile.from_dict(RUN)
    assert run.k == 3 and run.num_train_contexts is None and run.recipe_extra == {"contexts_per_micro_batch": 2}
    assert run.extra == {"script": RUN["script"], "custom": "kept"}
    path = run.write(tmp_path)
    assert path == tmp_path / cards.RUN_CONFIG_FILE
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written == RUN and list(written) == list(RUN)  # null kept, unknown keys kept, same order
    again = RunFile.read(tmp_path)
    assert again == run and again.to_dict() == RUN
    assert cards.read_run_config(tmp_path) == RUN
    assert RunFile(seed=1, base_model="b").to_dict() == {"base_model": "b", "seed": 1}  # unset fields left out


def test_data_name_is_read_when_dataset_is_absent(tmp_path):
    run = RunFile.from_dict({"recipe": "sft", "data": "provo"})
    assert run.training_data == "provo" and run.to_dict() == {"recipe": "sft", "data": "provo"}
    assert RunFile.from_dict({"data": "provo", "dataset": "me/d"}).training_data == "me/d"
    assert "| Training data | `provo` (Provo Corpus" in cards.render_model_card("me/m", run=run)


def test_training_args_json_fills_missing_hyperparameters(tmp_path):
    (tmp_path / cards.TRAINING_ARGS_FILE).write_text(json.dumps({"learning_rate": 0.1, "seed": 5, "output_dir": "x"}))
    run = RunFile.read(tmp_path)
    assert run.hyperparameters == {"learning_rate": 0.1, "seed": 5} and run.seed == 5
    with pytest.raises(InputError, match="--run-config .*missing.json: no such file"):
        RunFile.read(tmp_path, tmp_path / "missing.json")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("seed", "42", "'seed' must be an integer"),
        ("k", True, "'k' must be an integer"),
        ("base_model", 3, "'base_model' must be a string, got int"),
        ("command", ["python", "x"], "'command' must be a string, got list"),
        ("hyperparameters", [1], "'hyperparameters' must be an object"),
        ("metrics", "0.5", "'metrics' must be an object"),
        ("seeds", [1, "2"], "'seeds' must be a list of integers"),
    ],
)
def test_bad_type_is_one_line_naming_file_and_key(tmp_path, key, value, message):
    (tmp_path / cards.RUN_CONFIG_FILE).write_text(json.dumps({"recipe": "var", key: value}))
    with pytest.raises(InputError) as info:
        RunFile.read(tmp_path)
    text = str(info.value)
    assert message in text and str(tmp_path / cards.RUN_CONFIG_FILE) in text and "\n" not in text


def test_token_in_command_is_redacted_in_the_file(tmp_path):
    run = RunFile.from_dict({"command": f"python train.py --hub_token {TOKEN} --seed 1", "base_model": "me/b",
                             "script": {"hub_token": "plain-secret-value"}})
    text = run.write(tmp_path).read_text(encoding="utf-8")
    assert TOKEN not in text and "plain-secret-value" not in text
    written = json.loads(text)
    assert written["command"] == "python train.py --hub_token <redacted> --seed 1"
    assert written["script"] == {"hub_token": "<redacted>"} and written["base_model"] == "me/b"


# ------------------------------------------------------------------------------------ cards of run folders
@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    from varylm_hf.training.var import VarTrainer, VarTrainingArguments, save_var_run

    tmp = tmp_path_factory.mktemp("var")
    tok = make_tiny_word_tokenizer("bytelevel")
    rec = {"id": "p1-3", "passage_id": 1, "word_position": 3, "context": "The cat", "corpus_word": "sat",
           "answers": [{"word": "sat", "count": 3}, {"word": "ran", "count": 1}], "num_answers": 4, "majority": "sat"}
    args = VarTrainingArguments(output_dir=str(tmp / "out"), use_cpu=True, report_to="none", save_strategy="no",
                                disable_tqdm=True, per_device_train_batch_size=1, max_steps=1, label_mode="majority")
    trainer = VarTrainer(model=tiny_gpt2(len(tok)), args=args, train_dataset=[rec], processing_class=tok)
    trainer.train()
    out = save_var_run(trainer, tmp / "tiny-var", base_model="me/tiny-base", command=f"python t.py --hub_token {TOKEN}",
                       extra_config={"dataset": "me/provo_cloze", "hub_model_id": "me/tiny-var"})
    return out


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    from peft import get_peft_model

    from varylm_hf.training.adapters import lora_config
    from varylm_hf.training.instruct import save_adapter
    from varylm_hf.training.sft_config import VarSFTConfig

    out = tmp_path_factory.mktemp("adapter") / "tiny-lora"
    tok = make_tiny_chat_tokenizer()
    base = make_tiny_llama(tok)
    model = get_peft_model(base, lora_config(base, r=2, lora_alpha=4, lora_dropout=0.0))
    config = VarSFTConfig(output_dir=str(out), recipe="var", label_mode="majority", base_model_id="me/tiny-chat")
    return save_adapter(model, tok, str(out), config, train_rows=4)


def test_trainer_run_cards(trainer_run):
    described = LABEL_MODES["majority"].description
    run = RunFile.read(trainer_run)
    assert (run.recipe, run.base_model, run.hub_model_id, run.label_mode) == ("var", "me/tiny-base", "me/tiny-var",
                                                                           "majority")
    assert TOKEN not in (trainer_run / cards.RUN_CONFIG_FILE).read_text()
    # the card `varylm push` uploads
    card = cards.render_folder_card(trainer_run, "me/tiny-var")
    assert "base_model: me/tiny-base" in card and described in card and "- me/provo_cloze" in card
    (line,) = _command_lines(card)
    args = _eval_args(line)
    assert (args.eval_command, args.model, args.dataset, args.mode, args.out) == \
        ("run", "me/tiny-var", "me/provo_cloze", "both", "runs/eval/tiny-var")
    # the README.md written beside the checkpoint
    local = (trainer_run / "README.md").read_text()
    assert "base_model: me/tiny-base" in local and described in local and TOKEN not in local
    (line,) = _command_lines(local)
    args = _eval_args(line)
    assert (args.model, args.dataset, args.out) == (str(trainer_run), "me/provo_cloze", "runs/eval/tiny-var")


def test_adapter_run_cards(adapter_run):
    described = LABEL_MODES["majority"].description
    adapter_config = cards.read_json(adapter_run / "adapter_config.json")
    card = cards.render_folder_card(adapter_run, "me/tiny-lora", adapter_config=adapter_config)
    assert "base_model: me/tiny-chat" in card and "library_name: peft" in card and described in card
    (line,) = _command_lines(card)
    args = _eval_args(line)
    assert (args.model, args.adapter, args.out) == ("me/tiny-chat", "me/tiny-lora", "runs/eval/tiny-lora")
    local = (adapter_run / "README.md").read_text()
    assert "base_model: me/tiny-chat" in local and "library_name: peft" in local and described in local
    (line,) = _command_lines(local)
    args = _eval_args(line)
    assert (args.model, args.adapter) == ("me/tiny-chat", str(adapter_run))


# ------------------------------------------------------------------------------------ templates and model-index
def test_model_index_holds_sampled_exact_and_oracle_tvd():
    from huggingface_hub import ModelCard

    both = {"mean_tvd": 0.55, "oracle_tvd": 0.47, "mean_tvd_exact": 0.5, "split": "validation",
            "sampled": {"tvd": {"mean": 0.55, "sd": 0.01}}, "exact": {"tvd": {"mean": 0.5}}}
    card = ModelCard(cards.render_model_card("me/m", run=RUN, summary=both))
    got = [(r.metric_name, r.metric_value, r.dataset_type, r.dataset_split) for r in card.data.eval_results]
    assert got == [("mean TVD (lower is better)", 0.55, "me/provo_cloze", "validation"),
                   ("exact TVD (word probabilities)", 0.5, "me/provo_cloze", "validation"),
                   ("oracle TVD (human split-half)", 0.47, "me/provo_cloze", "validation")]
    assert "| validation | 0.5500 ± 0.0100 (SD over seeds) | 0.4700 | not recorded | `sampled` |" in card.text
    assert "* mean_tvd_exact: 0.5000" in card.text
    exact_only = {"mean_tvd": 0.5, "oracle_tvd": 0.47, "mean_tvd_exact": 0.5, "exact": {"tvd": {"mean": 0.5}}}
    card = ModelCard(cards.render_model_card("me/m", run=RUN, summary=exact_only))
    assert [r.metric_name for r in card.data.eval_results] == ["mean TVD (lower is better)",
                                                               "oracle TVD (human split-half)"]
    assert "| test | 0.5000 | 0.4700 | not recorded | `exact` |" in card.text


def test_local_cards_have_a_model_card_header(tmp_path):
    """The README.md beside a checkpoint or an adapter: YAML that ModelCard reads (base_model, datasets, tags)."""
    from huggingface_hub import ModelCard

    run = RunFile.from_dict({**RUN, "label_mode": "majority", "varylm": {"bos": "auto", "learning_rate": 0.01}})
    card = ModelCard(cards.render_var_card(run, tmp_path / "tiny-var"))
    assert (card.data.base_model, card.data.library_name, card.data.datasets) == ("me/base", "transformers",
                                                                                  ["me/provo_cloze"])
    assert "next-word-prediction" in card.data.tags and card.text.startswith("\n# tiny-var\n")
    assert "| learning_rate | 0.01 |" in card.text and "| eval_loss | 4.5000 |" in card.text
    peft_card = "---\nbase_model: /local/base\nlibrary_name: peft\ntags:\n- base_model:adapter:/local/base\n---\n# x\n"
    card = ModelCard(cards.render_adapter_card(peft_card, run, tmp_path / "tiny-lora", versions={"PEFT": "9.9"}))
    assert (card.data.base_model, card.data.library_name) == ("me/base", "peft")
    assert "base_model:adapter:/local/base" not in card.data.tags and "base_model:adapter:me/base" in card.data.tags
    assert card.text.startswith("\n# varylm-hf adapter: var recipe, majority answers\n")
    assert card.text.endswith("## Framework versions\n\n- PEFT 9.9\n")


def test_every_card_template_is_package_data():
    """Each card's template ships with the package: a setup.cfg package_data glob matches it, and none is idle."""
    import configparser
    import fnmatch
    from importlib import resources
    from pathlib import Path

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg", encoding="utf-8")
    globs = [glob.strip() for glob in setup["options.package_data"]["varylm_hf"].split(",")]
    package = Path(cards.__file__).parent
    assert [glob for glob in globs if not list(package.glob(glob))] == []  # no glob that matches nothing
    for name in cards.TEMPLATES.values():
        assert (resources.files("varylm_hf") / "templates" / name).is_file(), name
        assert any(fnmatch.fnmatch(f"templates/{name}", glob) for glob in globs), name
