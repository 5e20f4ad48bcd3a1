"""QA check (paper Appendix G): packaged items, loader errors, hit-rate evaluation."""

from __future__ import annotations

import json

import pytest

from varylm_hf import qa
from varylm_hf.data.normalize import normalize_word
from varylm_hf.errors import InputError


def test_packaged_items():
    items = qa.load_qa_items()
    assert 50 <= len(items) <= 60
    assert len({it["id"] for it in items}) == len(items)
    assert len({it["context"] for it in items}) == len(items)
    for it in items:
        assert normalize_word(it["target"]) == it["target"] and " " not in it["target"]
        assert it["question"].endswith("?") and it["context"] == it["context"].strip()
    assert len({it["topic"] for it in items}) >= 5


def test_qa_prompt_is_the_papers():
    assert qa.qa_prompt("Who?") == "Instruction: Answer the following question with one word only\nContext: Who?\nContinuation:"


@pytest.mark.parametrize(
    "line,match",
    [
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        (json.dumps({"id": "b", "context": "c", "target": "t"}), r"bad\.jsonl:2: missing or empty question"),
        (json.dumps({"id": "b", "context": "c", "target": "two words", "question": "q?"}), "single normalised"),
        (json.dumps({"id": "b", "context": "c", "target": "Paris", "question": "q?"}), "single normalised"),
        (json.dumps({"id": "a", "context": "c", "target": "t", "question": "q?"}), "duplicate id a"),
    ],
)
def test_bad_items_file(tmp_path, line, match):
    good = json.dumps({"id": "a", "context": "The", "target": "cat", "question": "What?"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=match):
        qa.load_qa_items(path)
    with pytest.raises(InputError, match="no such"):
        qa.load_qa_items(tmp_path / "missing.jsonl")


ITEMS = [
    {"id": "x1", "context": "The cat sat on the", "target": "mat", "accept": [], "question": "Where did the cat sit?"},
    {"id": "x2", "context": "Six is", "target": "six", "accept": ["6"], "question": "How many?"},
]


def test_hit_rate_counts_targets_and_accepted_spellings(monkeypatch):
    pytest.importorskip("varylm_hf.sampling")
    import varylm_hf.sampling as sampling

    seen = {}

    def fake(model, tokenizer, contexts, n, prompt, **kw):
        seen["prompt"], seen["contexts"], seen["n"] = prompt, list(contexts), n
        return [["mat", "mat", "rug", "<no-word>"], ["6", "six", "seven", "six"]]

    monkeypatch.setattr(sampling, "sample_next_words", fake)
    res = qa.qa_hit_rate(None, None, ITEMS, n_samples=4, chat=True)
    assert seen == {"prompt": "instruction", "contexts": ["The cat sat on the", "Six is"], "n": 4}
    assert [r["hit_rate"] for r in res["per_item"]] == [0.5, 0.75]
    assert res["hit_rate"] == pytest.approx(0.625)
    qa.qa_hit_rate(None, None, ITEMS, n_samples=4, chat=False)
    assert seen["prompt"] == "plain"
    with pytest.raises(InputError, match="form"):
        qa.qa_hit_rate(None, None, ITEMS, form="quiz")


def test_hit_rate_on_tiny_chat_model(tiny_chat_llama, tiny_chat_tokenizer):
    pytest.importorskip("varylm_hf.sampling")
    res = qa.qa_hit_rate(tiny_chat_llama, tiny_chat_tokenizer, ITEMS, n_samples=5, seed=3, chat=True)
    again = qa.qa_hit_rate(tiny_chat_llama, tiny_chat_tokenizer, ITEMS, n_samples=5, seed=3, chat=True)
    assert res == again  # seeded
    assert all(len(r["samples"]) == 5 and 0.0 <= r["hit_rate"] <= 1.0 for r in res["per_item"])
    q = qa.qa_hit_rate(tiny_chat_llama, tiny_chat_tokenizer, ITEMS, n_samples=3, form="question")
    assert q["form"] == "question" and len(q["per_item"]) == 2
    with pytest.raises(InputError, match="chat template"):
        qa.qa_hit_rate(tiny_chat_llama, tiny_chat_tokenizer, ITEMS, n_samples=3, chat=False, form="question")


def test_cli_eval_task_qa(tiny_chat_llama, tiny_chat_tokenizer, tmp_path, capsys):
    """`varylm eval run --task qa` writes the hit rate per seed; --adapter alone needs a base model."""
    from varylm_hf.cli import main

    folder = tmp_path / "tiny"
    tiny_chat_llama.save_pretrained(folder)
    tiny_chat_tokenizer.save_pretrained(folder)
    out = tmp_path / "qa"
    args = ["eval", "run", "--task", "qa", "--model", str(folder), "--limit", "3", "--num-samples", "4",
            "--seeds", "1", "2", "--quiet", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    assert "QA hit rate" in capsys.readouterr().out
    summary = json.loads((out / "qa_summary.json").read_text())
    assert summary["n_items"] == 3 and len(summary["per_seed"]) == 2 and summary["chat"] is True
    assert 0.0 <= summary["hit_rate"] <= 1.0
    items = [json.loads(line) for line in (out / "qa_items.jsonl").read_text().splitlines()]
    assert len(items) == 3 and all(len(it["samples"]) == 4 for it in items)
    assert main(args) == 2  # refuses to overwrite
    assert main(["eval", "run", "--task", "qa", "--out", str(tmp_path / "x")]) == 2
    assert "--model is required" in capsys.readouterr().err
