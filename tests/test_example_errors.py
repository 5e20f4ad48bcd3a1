"""Bad input to the example training scripts (issue #10 items 8, 10, 12): one line, exit 2, nothing left behind.

Every case of the tables runs the real script (examples/train_gpt2.py, examples/train_instruct.py) and
asserts: exit status 2, exactly one line on stderr, ``error: ...`` naming the argument or file, no
"Traceback", no output folder created, every file the user had unchanged.

Both scripts parse their options with transformers' / TRL's dataclass parsers, which need torch (~6 s per start
on a 2-core CPU): each table runs in-process through the script's own ``run()`` (what ``__main__`` calls), two
cases of each run as real subprocesses, and the whole tables as subprocesses are marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPT2 = REPO / "examples" / "train_gpt2.py"
INSTRUCT = REPO / "examples" / "train_instruct.py"


def script_env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny GPT-2 folder (never loaded by these cases: they must fail before)."""
    from conftest import make_tiny_word_tokenizer, tiny_gpt2

    path = tmp_path_factory.mktemp("model")
    tokenizer = make_tiny_word_tokenizer("bytelevel")
    tiny_gpt2(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def workspace(tmp_path, model_dir):
    """The user's folder: notes, a plain folder, YAML files (good and bad); the run folder does not exist."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    plain = tmp_path / "plain-folder"
    plain.mkdir()
    (plain / "keep.txt").write_text("keep me\n")
    out = tmp_path / "new-run"
    common = f"model_name_or_path: {model_dir}\noutput_dir: {out}\nuse_cpu: true\nmax_train_contexts: 4\n"
    icommon = f"model_name_or_path: {model_dir}\noutput_dir: {out}\nload_in_4bit: false\nlimit_contexts: 2\n"
    yamls = {
        "iyaml_unknown": icommon + "learning_rat: 1.0e-4\n",
        "iyaml_type": icommon + "learning_rate: fast\n",
        "iyaml_lr_nan": icommon + "learning_rate: .nan\n",
        "iyaml_batch0": icommon + "batch_size: 0\n",
        "yaml_syntax": "model_name_or_path: [unclosed\n",
        "yaml_list": "- model_name_or_path\n- gpt2\n",
        "yaml_unknown": common + "learning_rat: 1.0e-4\n",
        "yaml_type": common + "learning_rate: fast\n",
        "yaml_batch0": common + "per_device_train_batch_size: 0\n",
        "yaml_lr_nan": common + "learning_rate: .nan\n",
        "yaml_negative": common.replace("max_train_contexts: 4", "max_train_contexts: -1"),
        "yaml_lr_negative": common + "learning_rate: -1.0e-5\n",
    }
    paths = {"model": str(model_dir), "out": str(out), "file": str(notes), "dir": str(plain), "tmp": str(tmp_path)}
    for name, text in yamls.items():
        path = tmp_path / f"{name.replace('_', '-')}.yaml"
        path.write_text(text)
        paths[name] = str(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    paths["yaml_binary"] = str(binary)
    return paths


def snapshot(*roots) -> dict:
    return {str(p): (p.read_bytes() if p.is_file() else "dir") for root in roots for p in sorted(Path(root).rglob("*"))}


# id, arguments (templates; a single *.yaml argument is passed alone), a fragment the error line must contain
GPT2_CASES = [
    ("batch-size-0", "--per_device_train_batch_size 0", "--per_device_train_batch_size 0"),
    ("eval-batch-size-0", "--per_device_eval_batch_size 0", "--per_device_eval_batch_size 0"),
    ("grad-accumulation-0", "--gradient_accumulation_steps 0", "--gradient_accumulation_steps 0"),
    ("lr-nan", "--learning_rate nan", "--learning_rate nan"),
    ("lr-inf", "--learning_rate inf", "--learning_rate inf"),
    ("lr-negative", "--learning_rate=-1e-5", "--learning_rate -1e-05"),
    ("epochs-nan", "--max_steps -1 --num_train_epochs nan", "--num_train_epochs nan"),
    ("seed-negative", "--seed -5", "--seed -5"),
    ("max-train-contexts-negative", "--max_train_contexts -1", "--max_train_contexts -1"),
    ("max-eval-contexts-negative", "--max_eval_contexts -3", "--max_eval_contexts -3"),
    ("max-train-contexts-not-int", "--max_train_contexts many", "--max_train_contexts"),
    ("label-mode-unknown", "--label_mode everything", "--label_mode"),
    ("unknown-flag", "--no_such_flag 1", "--no_such_flag"),
    ("output-dir-is-a-file", "--output_dir {file}", "--output_dir {file}: exists and is not a folder"),
    ("output-dir-under-a-file", "--output_dir {file}/run", "--output_dir {file}/run: cannot create it"),
    ("model-missing-path", "--model_name_or_path {tmp}/no-such-model", "--model_name_or_path {tmp}/no-such-model"),
    ("model-folder-without-config", "--model_name_or_path {dir}", "--model_name_or_path {dir}: folder has no config.json"),
    ("resume-last-without-checkpoint", "--resume_from_checkpoint last", "--resume_from_checkpoint last: no complete"),
    ("resume-missing-folder", "--resume_from_checkpoint {tmp}/nope", "--resume_from_checkpoint {tmp}/nope: no such folder"),
    ("resume-not-a-checkpoint", "--resume_from_checkpoint {dir}", "--resume_from_checkpoint {dir}: not a complete"),
    ("yaml-syntax", "{yaml_syntax}", "{yaml_syntax}: not valid YAML at line"),
    ("yaml-not-a-mapping", "{yaml_list}", "{yaml_list}: expected a mapping"),
    ("yaml-unknown-key", "{yaml_unknown}", "{yaml_unknown}: unknown option 'learning_rat'"),
    ("yaml-wrong-type", "{yaml_type}", "{yaml_type}: argument --learning_rate"),
    ("yaml-batch-size-0", "{yaml_batch0}", "{yaml_batch0}: --per_device_train_batch_size 0"),
    ("yaml-lr-nan", "{yaml_lr_nan}", "{yaml_lr_nan}: --learning_rate nan"),
    ("yaml-negative-limit", "{yaml_negative}", "{yaml_negative}: --max_train_contexts -1"),
    ("yaml-lr-negative", "{yaml_lr_negative}", "{yaml_lr_negative}: --learning_rate -1e-05"),
    ("yaml-missing-file", "{tmp}/missing.yaml", "{tmp}/missing.yaml: cannot read it"),
    ("yaml-binary-file", "{yaml_binary}", "{yaml_binary}: cannot read it"),
]
GPT2_BASE = ("--model_name_or_path {model} --output_dir {out} --use_cpu true --report_to none --max_train_contexts 4 "
             "--max_eval_contexts 2 --max_steps 1 --save_strategy no --eval_strategy no")

INSTRUCT_CASES = [
    ("batch-size-0", "--batch_size 0", "--batch_size 0"),
    ("per-device-batch-size-0", "--per_device_batch_size 0", "--per_device_batch_size 0"),
    ("batch-not-a-multiple", "--batch_size 30 --per_device_batch_size 4", "--batch_size 30 must be a multiple"),
    ("lr-nan", "--learning_rate nan", "--learning_rate nan"),
    ("lr-zero", "--learning_rate 0", "--learning_rate 0.0"),
    ("epochs-nan", "--max_steps -1 --num_train_epochs nan", "--num_train_epochs nan"),
    ("max-steps-0", "--max_steps 0", "--max_steps 0"),
    ("seed-negative", "--seed -5", "--seed -5"),
    ("limit-contexts-negative", "--limit_contexts -1", "--limit_contexts -1"),
    ("limit-contexts-not-int", "--limit_contexts 1.5", "--limit_contexts"),
    ("logging-steps-0", "--logging_steps 0", "--logging_steps 0"),
    ("save-steps-negative", "--save_steps -1", "--save_steps -1"),
    ("recipe-unknown", "--recipe dpo", "--recipe"),
    ("unknown-flag", "--no_such_flag 1", "--no_such_flag"),
    ("derived-batch-flag", "--per_device_train_batch_size 2", "--per_device_train_batch_size 2: the instruct recipes"),
    ("use-peft-false", "--use_peft false", "--use_peft false"),
    ("qlora-fp4", "--qlora --bnb_4bit_quant_type fp4", "--bnb_4bit_quant_type fp4"),
    ("output-dir-is-a-file", "--output_dir {file}", "--output_dir {file}: exists and is not a folder"),
    ("output-dir-under-a-file", "--output_dir {file}/run", "--output_dir {file}/run: cannot create it"),
    ("model-missing-path", "--model_name_or_path {tmp}/no-such-model", "--model_name_or_path {tmp}/no-such-model"),
    ("model-folder-without-config", "--model_name_or_path {dir}", "--model_name_or_path {dir}: folder has no config.json"),
    ("resume-last-without-checkpoint", "--resume_from_checkpoint last", "--resume_from_checkpoint last: no complete"),
    ("resume-not-a-checkpoint", "--resume_from_checkpoint {dir}", "--resume_from_checkpoint {dir}: not a complete"),
    ("config-without-file", "--config", "argument --config: expected one argument"),
    ("yaml-syntax", "{yaml_syntax}", "{yaml_syntax}: not valid YAML at line"),
    ("yaml-not-a-mapping", "{yaml_list}", "{yaml_list}: Config file {yaml_list} must contain a YAML mapping"),
    ("yaml-unknown-key", "{iyaml_unknown}", "{iyaml_unknown}: unknown option 'learning_rat'"),
    ("yaml-wrong-type", "{iyaml_type}", "{iyaml_type}: argument --learning_rate"),
    ("yaml-lr-nan", "{iyaml_lr_nan}", "{iyaml_lr_nan}: --learning_rate nan"),
    ("yaml-batch-size-0", "{iyaml_batch0}", "{iyaml_batch0}: --batch_size 0"),
    ("yaml-missing-file", "{tmp}/missing.yaml", "{tmp}/missing.yaml: cannot read it"),
    ("yaml-binary-file", "{yaml_binary}", "{yaml_binary}: cannot read it"),
]
INSTRUCT_BASE = ("--model_name_or_path {model} --no-qlora --recipe var --limit_contexts 2 --max_steps 1 --no-eval "
                 "--output_dir {out}")


def case_argv(base: str, args: str, paths: dict) -> list[str]:
    words = [w.format(**paths) for w in args.split()]
    if len(words) == 1 and words[0].endswith(".yaml"):
        return words
    return [w.format(**paths) for w in base.split()] + words


def check_outcome(code: int, stdout: str, stderr: str, fragment: str, paths: dict, before: dict):
    lines = stderr.strip().splitlines()
    assert code == 2, (code, stderr[-2000:])
    assert "Traceback" not in stderr + stdout
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    assert fragment.format(**paths) in lines[0], lines[0]
    assert not Path(paths["out"]).exists()  # no (empty) run folder left behind
    assert snapshot(paths["tmp"], paths["model"]) == before  # the user's files unchanged, nothing added


def run_script(script: Path, argv: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                          env=script_env(**env), timeout=300)


def check_inprocess_case(script, base, workspace, capfd, args, fragment) -> None:
    """Run one case through the imported script's ``run(argv)`` and check its outcome."""
    before = snapshot(workspace["tmp"], workspace["model"])
    capfd.readouterr()
    code = script.run(case_argv(base, args, workspace))
    captured = capfd.readouterr()
    check_outcome(code, captured.out, captured.err, fragment, workspace, before)


def check_subprocess_case(script: Path, base, workspace, case) -> None:
    """Run one (id, args, fragment) case as a subprocess and check its outcome."""
    _, args, fragment = case
    before = snapshot(workspace["tmp"], workspace["model"])
    result = run_script(script, case_argv(base, args, workspace))
    check_outcome(result.returncode, result.stdout, result.stderr, fragment, workspace, before)



@pytest.mark.parametrize("args,fragment", [c[1:] for c in GPT2_CASES], ids=[c[0] for c in GPT2_CASES])
def test_train_gpt2_bad_input(gpt2_script, workspace, capfd, args, fragment):
    check_inprocess_case(gpt2_script, GPT2_BASE, workspace, capfd, args, fragment)


QUICK_GPT2 = {"batch-size-0", "yaml-syntax"}


@pytest.mark.parametrize("case", [c for c in GPT2_CASES if c[0] in QUICK_GPT2], ids=lambda c: c[0])
def test_train_gpt2_bad_input_subprocess(workspace, case):
    check_subprocess_case(GPT2, GPT2_BASE, workspace, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in GPT2_CASES if c[0] not in QUICK_GPT2]
                         + [("model-hub-id-offline", "--model_name_or_path no-such-org/no-such-model",
                             "--model_name_or_path no-such-org/no-such-model")], ids=lambda c: c[0])
def test_train_gpt2_bad_input_subprocess_all(workspace, case):
    check_subprocess_case(GPT2, GPT2_BASE, workspace, case)


@pytest.mark.parametrize("args,fragment", [c[1:] for c in INSTRUCT_CASES], ids=[c[0] for c in INSTRUCT_CASES])
def test_train_instruct_bad_input(instruct_script, workspace, capfd, args, fragment):
    check_inprocess_case(instruct_script, INSTRUCT_BASE, workspace, capfd, args, fragment)


QUICK_INSTRUCT = {"batch-size-0", "yaml-unknown-key"}


@pytest.mark.parametrize("case", [c for c in INSTRUCT_CASES if c[0] in QUICK_INSTRUCT], ids=lambda c: c[0])
def test_train_instruct_bad_input_subprocess(workspace, case):
    check_subprocess_case(INSTRUCT, INSTRUCT_BASE, workspace, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in INSTRUCT_CASES if c[0] not in QUICK_INSTRUCT], ids=lambda c: c[0])
def test_train_instruct_bad_input_subprocess_all(workspace, case):
    check_subprocess_case(INSTRUCT, INSTRUCT_BASE, workspace, case)


def test_train_instruct_config_file_with_flag_overrides(instruct_script, tmp_path):
    """``--config c.yaml`` (TrlParser) plus flags, the flags winning; SFTConfig and ModelConfig fields are options
    too; ``--config=c.yaml`` and a lone ``c.yaml`` work; the paper's values are the defaults."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: smollm2-gguf\nrecipe: var\nlearning_rate: 1.0e-4\nnum_train_epochs: 2\n"
                   "label_mode: majority\nlora_r: 4\nlr_scheduler_type: cosine\nload_in_4bit: false\nlimit_contexts: 8\n")
    script, config, model = instruct_script.parse_arguments(["--config", str(cfg), "--learning_rate", "3e-5"])
    assert (config.learning_rate, config.num_train_epochs, config.label_mode, config.recipe) == (3e-5, 2, "majority", "var")
    assert (model.model_name_or_path, model.lora_r, model.load_in_4bit, script.limit_contexts) == ("smollm2-gguf", 4, False, 8)
    assert config.lr_scheduler_type == "cosine" and config.output_dir == "runs/instruct-var-majority"
    _, config, _ = instruct_script.parse_arguments([f"--config={cfg}", "--no-qlora", "--batch_size", "64"])
    assert config.learning_rate == 1e-4 and config.batch_size == 64
    _, config, model = instruct_script.parse_arguments([str(cfg)])
    assert config.num_train_epochs == 2 and model.lora_alpha == 16
    script, config, model = instruct_script.parse_arguments([])  # the paper's run
    assert (model.model_name_or_path, model.load_in_4bit, model.use_bnb_nested_quant, model.lora_r,
            model.lora_alpha, model.lora_dropout) == (instruct_script.PAPER_MODEL, True, True, 8, 16, 0.05)
    assert (config.recipe, config.learning_rate, config.batch_size, config.num_train_epochs, config.seed,
            config.save_strategy, script.eval) == ("sft", 1e-4, 32, 4, 42, "no", True)
    _, _, model = instruct_script.parse_arguments(["--no-qlora"])
    assert model.load_in_4bit is False
    assert instruct_script.run(["--config"]) == 2


@pytest.mark.slow
def test_train_instruct_unreachable_model_names_model_name_or_path(workspace):
    """The library's own message says --model; the script's flag is --model_name_or_path."""
    before = snapshot(workspace["tmp"], workspace["model"])
    result = run_script(INSTRUCT, case_argv(INSTRUCT_BASE, "--model_name_or_path no-such-org/no-such-model", workspace))
    check_outcome(result.returncode, result.stdout, result.stderr, "--model_name_or_path no-such-org/no-such-model",
                  workspace, before)


def test_zero_limits_mean_all_and_are_documented(gpt2_script, instruct_script, workspace):
    """0 = all contexts (documented in --help), the same in both scripts; negative values are errors (above)."""
    assert "0 or unset: all" in " ".join(gpt2_script.make_parser().format_help().split())
    script, args = gpt2_script.parse_arguments(gpt2_script.make_parser(), case_argv(
        GPT2_BASE, "--max_train_contexts 0 --max_eval_contexts 0", workspace))
    assert gpt2_script.check_arguments(script, args) == Path(workspace["out"])  # accepted; the folder is to be made
    assert not Path(workspace["out"]).exists()

    help_text = subprocess.run([sys.executable, str(INSTRUCT), "--help"], capture_output=True, text=True,
                               env=script_env(), timeout=120).stdout
    assert "0 or unset: all" in " ".join(help_text.split())
    instruct = instruct_script
    records = [{"id": i} for i in range(5)]
    assert instruct._subset(records, 0, 42) is records and instruct._subset(records, None, 42) is records
    assert len(instruct._subset(records, 3, 42)) == 3


def test_train_gpt2_yaml_values_are_typed_like_flags(gpt2_script, workspace, tmp_path):
    """A YAML config goes through the same parsing as the flags: '1e-4' (a string to YAML) is a float."""
    config = tmp_path / "ok.yaml"
    config.write_text(f"model_name_or_path: {workspace['model']}\noutput_dir: {workspace['out']}\nuse_cpu: true\n"
                      "learning_rate: 1e-4\nweight_decay: -0.0\nreport_to: [none]\nmax_train_contexts: 0\n"
                      "group_by_passage: true\nresume_from_checkpoint: null\nlr_scheduler_kwargs: {}\n")
    script, args = gpt2_script.parse_arguments(gpt2_script.make_parser(), [str(config)])
    assert args.learning_rate == 1e-4 and isinstance(args.learning_rate, float)
    assert args.use_cpu is True and args.group_by_passage is True and args.report_to in ([], ["none"], "none")
    assert script.model_name_or_path == workspace["model"] and script.max_train_contexts == 0
    assert args.resume_from_checkpoint is None


def test_train_gpt2_config_file_with_flag_overrides(gpt2_script, tmp_path):
    """``--config c.yaml`` (TrlParser's convention) plus flags: the flags win; the single-file form still works."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: gpt2\nlearning_rate: 1.0e-4\nnum_train_epochs: 2\nlabel_mode: majority\n")
    parser = gpt2_script.make_parser()
    script, args = gpt2_script.parse_arguments(parser, ["--config", str(cfg), "--learning_rate", "3e-5"])
    assert (args.learning_rate, args.num_train_epochs, args.label_mode) == (3e-5, 2, "majority")
    assert script.model_name_or_path == "gpt2"
    _, args = gpt2_script.parse_arguments(parser, [f"--config={cfg}"])
    assert args.learning_rate == 1e-4
    _, args = gpt2_script.parse_arguments(parser, [str(cfg)])
    assert args.num_train_epochs == 2
    assert gpt2_script.run(["--config"]) == 2
