"""The reproduction grid: planning, resuming, crash isolation, reports."""

import json

import pytest

from varylm_hf.errors import InputError
from varylm_hf.reproduce import Cell, ReproduceConfig, load_results, plan_cells, run_grid


def test_plan_cells_grid():
    cfg = ReproduceConfig(conditions=["base", "ft_all", "oracle"], seeds=[1, 2], ablation_ks=[4])
    names = [c.name for c in plan_cells(cfg)]
    assert names == ["base-seed1", "ft_all-seed1", "oracle-seed1", "ft_k4-seed1",
                     "base-seed2", "ft_all-seed2", "oracle-seed2", "ft_k4-seed2"]
    cells = {c.name: c for c in plan_cells(cfg)}
    assert cells["ft_all-seed1"].label_mode == "all" and cells["base-seed1"].label_mode is None
    assert cells["ft_k4-seed2"] == Cell("ft_k4", 2, "sample_k", 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"conditions": ["base", "ft_everything"]}, "unknown ft_everything"),
        ({"conditions": ["one_shot"]}, "needs --style instruct"),
        ({"seeds": []}, "at least one seed"),
        ({"ablation_ks": [0]}, "positive"),
        ({"seeds": [-5]}, "--seeds"),
        ({"learning_rate": float("nan")}, "--learning-rate"),
        ({"epochs": 0}, "--epochs"),
        ({"limit_eval": -1}, "--limit-eval"),
        ({"eval_mode": "guess"}, "eval-mode"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        plan_cells(ReproduceConfig(**kwargs))


def test_resume_skips_finished_and_isolates_crashes(tmp_path):
    cfg = ReproduceConfig(conditions=["base", "ft_all", "oracle"], seeds=[1, 2], out_dir=str(tmp_path / "run"))
    calls = []
    tvd = {"base": 0.8, "ft_all": 0.6, "oracle": 0.45}

    def flaky(cell, config, cell_dir):
        calls.append(cell.name)
        if cell.name == "ft_all-seed2":
            raise RuntimeError("out of memory")
        return {"mean_tvd": tvd[cell.condition] + cell.seed / 100}

    status = run_grid(cfg, flaky, progress=False)
    assert status["failed"] == ["ft_all-seed2"] and len(status["done"]) == 5
    assert "out of memory" in (tmp_path / "run/cells/ft_all-seed2/error.txt").read_text()
    table = (tmp_path / "run/table.md").read_text()
    assert "| Base | 0.815 ± 0.007 | 1, 2 |" in table  # mean of 0.81, 0.82; sample SD 0.00707
    assert "| FT (Mul. labels) | 0.610 | 1 |" in table  # seed 1 only (seed 2 crashed)
    assert table.index("Base") < table.index("FT (Mul. labels)") < table.index("Oracle")

    calls.clear()
    status = run_grid(cfg, lambda c, cf, d: calls.append(c.name) or {"mean_tvd": 0.62}, progress=False)
    assert calls == ["ft_all-seed2"]  # only the crashed cell runs again
    assert status["done"] == ["ft_all-seed2"] and len(status["skipped"]) == 5
    assert not (tmp_path / "run/cells/ft_all-seed2/error.txt").exists()
    assert "| FT (Mul. labels) | 0.615 ± 0.007 | 1, 2 |" in (tmp_path / "run/table.md").read_text()
    results = load_results(tmp_path / "run")
    assert len(results) == 6 and all("seconds" in r for r in results)
    assert json.loads((tmp_path / "run/config.json").read_text())["seeds"] == [1, 2]


def test_ablation_and_qa_reports(tmp_path):
    cfg = ReproduceConfig(conditions=["base", "ft_all"], seeds=[1], ablation_ks=[1, 16], out_dir=str(tmp_path))
    run_grid(cfg, lambda c, cf, d: {"mean_tvd": 0.5, "qa_hit_rate": 0.25 if c.condition == "base" else 0.2}, progress=False)
    ablation = (tmp_path / "ablation.md").read_text()
    assert ablation.index("ft_k1 ") < ablation.index("ft_k16")
    assert "| Base | 0.250 | 1 |" in (tmp_path / "qa.md").read_text()


def _rec(pid, pos, context, answers):
    answers = [{"word": w, "count": c} for w, c in answers]
    return {"id": f"t-{pid:02d}-{pos:03d}", "passage_id": pid, "word_position": pos, "context": context,
            "corpus_word": answers[-1]["word"], "answers": answers,
            "num_answers": sum(a["count"] for a in answers), "majority": answers[0]["word"]}


def test_real_cells_on_a_tiny_model_resume(tmp_path, wordlevel_tokenizer):
    """ModelRunner trains and evaluates a tiny GPT-2; a second run skips every finished cell."""
    from varylm_hf.reproduce import ModelRunner

    from conftest import make_wordlevel_gpt2

    folder = tmp_path / "tiny"
    make_wordlevel_gpt2(wordlevel_tokenizer).save_pretrained(folder)
    wordlevel_tokenizer.save_pretrained(folder)
    records = [  # passage 1 is in the paper's train split, passage 6 in its test split
        _rec(1, 3, "the cat", [("sat", 6), ("ran", 2)]),
        _rec(1, 4, "the cat sat", [("on", 7), ("and", 1)]),
        _rec(1, 5, "the cat sat on", [("the", 5), ("a", 3)]),
        _rec(6, 3, "a dog", [("ran", 4), ("sat", 4)]),
        _rec(6, 4, "a dog ran", [("and", 6), ("on", 2)]),
        _rec(2, 3, "the dog", [("ran", 5), ("sat", 3)]),  # passage 2: validation
    ]
    cfg = ReproduceConfig(model=str(folder), conditions=["base", "ft_all", "oracle"], seeds=[3], epochs=2,
                          learning_rate=1e-2, batch_size=2, num_samples=6, eval_mode="both", curves=True,
                          out_dir=str(tmp_path / "run"))
    status = run_grid(cfg, ModelRunner(cfg, records=records), progress=False)
    assert status["failed"] == [] and len(status["done"]) == 3
    results = {r["condition"]: r for r in load_results(tmp_path / "run")}
    assert results["ft_all"]["train_loss_last"] < results["ft_all"]["train_loss_first"]
    assert results["base"]["n_contexts"] == 2 and 0.0 <= results["base"]["mean_tvd"] <= 1.0
    assert (tmp_path / "run/cells/ft_all-seed3/eval/summary.json").exists()
    assert (tmp_path / "run/figures-seed3").is_dir()
    # exact TVD beside sampled TVD, the sampled measure's floor, learning curves in exact TVD
    curve = results["ft_all"]["curve"]
    assert [c["epoch"] for c in curve] == [0.0, 1.0, 2.0]
    assert all(0 <= c["exact_tvd/validation"] <= 1 and 0 <= c["exact_tvd/test"] <= 1 for c in curve[1:])
    assert "exact_tvd/test" not in curve[0]  # epoch 0 on test is the Base row
    assert 0 <= curve[0]["exact_tvd/validation"] <= 1
    assert curve[-1]["exact_tvd/test"] == pytest.approx(results["ft_all"]["mean_tvd_exact"], abs=1e-6)
    table = (tmp_path / "run/table.md").read_text()
    assert "Exact TVD ± SD (↓; 2 contexts)" in table and "Sampled TVD ± SD (↓; 6 samples x 2 contexts)" in table
    assert "| Perfect model (q = p) sampled at n = 6 | – |" in table
    assert "| FT (Mul. labels) | 3 | 2 |" in (tmp_path / "run/curves.md").read_text()  # seed 3, epoch 2
    assert (tmp_path / "run/figures-seed3/fig_sampling_bias.png").exists()

    class Exploding(ModelRunner):
        def fresh_model(self):
            raise AssertionError("a finished cell was run again")

    again = run_grid(cfg, Exploding(cfg, records=records), progress=False)
    assert again["done"] == [] and again["failed"] == [] and len(again["skipped"]) == 3


def test_reproduce_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    import runpy

    example = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "examples" / "reproduce.py"))
    out = tmp_path / "run"
    assert example["main"](["--conditions", "one_shot", "--out", str(out)]) == 2
    assert "needs --style instruct" in capsys.readouterr().err
    assert not out.exists()


def test_changed_settings_stop_instead_of_mixing_results(tmp_path):
    """Issue #10 item 6: finished cells are never reused under other settings, nor config.json rewritten."""
    out = tmp_path / "run"
    stub = lambda cell, config, cell_dir: {"mean_tvd": 0.5}  # noqa: E731
    run_grid(ReproduceConfig(conditions=["base"], seeds=[1], limit_eval=2, out_dir=str(out)), stub, progress=False)
    before = (out / "config.json").read_text()
    with pytest.raises(InputError, match=r"--limit-eval 2 -> 5"):
        run_grid(ReproduceConfig(conditions=["base"], seeds=[1], limit_eval=5, out_dir=str(out)), stub, progress=False)
    assert (out / "config.json").read_text() == before
    # the same settings with a bigger grid reuse the finished cell
    status = run_grid(ReproduceConfig(conditions=["base"], seeds=[1, 2], limit_eval=2, out_dir=str(out)), stub,
                      progress=False)
    assert status["skipped"] == ["base-seed1"] and status["done"] == ["base-seed2"]


def test_stop_after_epoch_keeps_the_schedule_of_the_full_run(wordlevel_tokenizer, tmp_path):
    """--stop-after-epoch 1 of a 2-epoch schedule = the epoch-1 point of the 2-epoch run (the model validated)."""
    from varylm_hf.reproduce import ModelRunner

    from conftest import make_wordlevel_gpt2

    folder = tmp_path / "tiny"
    make_wordlevel_gpt2(wordlevel_tokenizer).save_pretrained(folder)
    wordlevel_tokenizer.save_pretrained(folder)
    records = [_rec(1, 3, "the cat", [("sat", 6), ("ran", 2)]), _rec(1, 4, "the cat sat", [("on", 7), ("and", 1)]),
               _rec(6, 3, "a dog", [("ran", 4), ("sat", 4)]), _rec(2, 3, "the dog", [("ran", 5), ("sat", 3)])]
    common = dict(model=str(folder), conditions=["ft_all"], seeds=[3], epochs=2, learning_rate=1e-2, batch_size=1,
                  eval_mode="exact", curves=True)
    full = ReproduceConfig(**common, out_dir=str(tmp_path / "full"))
    run_grid(full, ModelRunner(full, records=records), progress=False)
    stop = ReproduceConfig(**common, stop_after_epoch={"ft_all": 1}, out_dir=str(tmp_path / "stop"))
    run_grid(stop, ModelRunner(stop, records=records), progress=False)
    curve = load_results(tmp_path / "full")[0]["curve"]
    stopped = load_results(tmp_path / "stop")[0]
    assert [c["epoch"] for c in stopped["curve"]] == [0.0, 1.0]
    assert stopped["curve"][1]["exact_tvd/validation"] == pytest.approx(curve[1]["exact_tvd/validation"], abs=1e-6)
    assert stopped["mean_tvd_exact"] != pytest.approx(load_results(tmp_path / "full")[0]["mean_tvd_exact"])
    with pytest.raises(InputError, match="--stop-after-epoch"):
        ReproduceConfig(epochs=2, stop_after_epoch={"*": 3}).validate()
    with pytest.raises(InputError, match="unknown condition"):
        ReproduceConfig(epochs=2, stop_after_epoch={"ft_nope": 1}).validate()
    from varylm_hf.cli import make_parser
    from varylm_hf.commands.reproduce import config_from_args

    args = make_parser().parse_args(["reproduce", "--stop-after-epoch", "2", "ft_majority=1", "--epochs", "3"])
    assert config_from_args(args).stop_after_epoch == {"*": 2, "ft_majority": 1}
    # the demo preset's stop survives the command line (it is the preset's default)
    assert config_from_args(make_parser().parse_args(["demo"])).stop_after_epoch == {"ft_majority": 1}
    assert config_from_args(make_parser().parse_args(["reproduce"])).stop_after_epoch == {}


@pytest.mark.slow  # two launches, one of them torchrun x 2, on 2 shared cores: ~1 min
def test_two_process_reproduce_writes_the_rows_of_one_process(tmp_path):
    """Issue #13 part 3: `torchrun --nproc_per_node 2 varylm reproduce` (evaluation cells) shards the exact and
    sampled evaluation by passage; the main process writes the same rows and table as one process."""
    import os
    import subprocess
    import sys

    from conftest import make_tiny_word_tokenizer, tiny_gpt2

    folder = tmp_path / "tiny"
    tok = make_tiny_word_tokenizer("bytelevel")
    tiny_gpt2(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    args = ["reproduce", "--model", str(folder), "--conditions", "base", "oracle", "--seeds", "1",
            "--num-samples", "4", "--limit-eval", "60", "--limit-exact", "60"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29551"]
    for name, launcher in (("one", [sys.executable]), ("two", torchrun)):
        proc = subprocess.run(launcher + ["-m", "varylm_hf.cli", *args, "--out", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("done 2,") == 1  # one report, from the main process
    for rel in ("cells/base-seed1/eval/contexts.jsonl", "cells/base-seed1/eval_exact/contexts.jsonl", "table.md"):
        one, two = (tmp_path / "one" / rel).read_bytes(), (tmp_path / "two" / rel).read_bytes()
        assert one == two and len(one) > 100, rel
    rows = (tmp_path / "one" / "cells/base-seed1/eval_exact/contexts.jsonl").read_text().splitlines()
    assert len({json.loads(line)["passage_id"] for line in rows}) >= 2  # both processes had work
    assert not list((tmp_path / "two").rglob("error*.txt"))


def test_bf16_flag_reaches_the_instruct_trainer_and_the_settings(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    """--bf16 / --no-bf16 / unset parse to True / False / None; None keeps the settings of older run folders;
    an instruct cell trained with it records bf16 in its adapter's run file."""
    from varylm_hf.cli import make_parser
    from varylm_hf.commands.reproduce import config_from_args
    from varylm_hf.reproduce import ModelRunner

    parse = lambda *a: config_from_args(make_parser().parse_args(["reproduce", *a])).bf16  # noqa: E731
    assert (parse("--bf16"), parse("--no-bf16"), parse()) == (True, False, None)
    assert ReproduceConfig().settings()["bf16"] is None  # an old folder's cells (no key) read as None: same settings
    folder = tmp_path / "chat"
    tiny_chat_llama.save_pretrained(folder)
    tiny_chat_tokenizer.save_pretrained(folder)
    records = [_rec(1, 3, "the cat", [("sat", 6), ("ran", 2)]), _rec(6, 3, "a dog", [("ran", 4), ("sat", 4)]),
               _rec(2, 3, "the dog", [("ran", 5), ("sat", 3)])]
    config = ReproduceConfig(model=str(folder), style="instruct", recipe="var", conditions=["ft_all"], seeds=[3],
                             epochs=1, learning_rate=1e-2, eval_mode="exact", bf16=True, out_dir=str(tmp_path / "run"))
    run_grid(config, ModelRunner(config, records=records), progress=False)
    (result,) = load_results(tmp_path / "run")
    assert result["settings"]["bf16"] is True and 0 <= result["mean_tvd_exact"] <= 1
    run = json.loads(next((tmp_path / "run").rglob("varylm_run.json")).read_text())
    assert run["hyperparameters"]["bf16"] is True
