"""Cloze data: normaliser, Provo loaders (packaged and official CSV), generic files, splits, labels, Hub folder."""

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from varylm_hf.data import (
    NO_WORD,
    PAPER_SPLIT,
    Normalizer,
    build_dataset_folder,
    download_provo_csv,
    first_word,
    label_distribution,
    load_cloze_file,
    load_provo,
    passage_split,
    render_card,
    split_records,
    train_test_split_ids,
)
from varylm_hf.data.provo import read_packaged
from varylm_hf.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def provo():
    return load_provo()


# ----------------------------------------------------------------------------- normaliser
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Mat.", "mat"),
        ("  the   Cat ", "the cat"),
        ("doesn\u00d5t", "doesn't"),  # cp1252-read MacRoman apostrophe
        ("doesn\u2019t", "doesn't"),
        ("\"well-known,\"", "well-known"),
        ("-----", ""),
        (".", ""),
        ("\u00d1", ""),  # em dash mojibake
        ("\uff21pple", "apple"),  # NFKC full-width A
        ("n/a", "n/a"),
        ("90%", "90"),
    ],
)
def test_normalizer_defaults(raw, expected):
    assert Normalizer()(raw) == expected


def test_normalizer_options():
    assert Normalizer(lowercase=False)("Mat.") == "Mat"
    assert Normalizer(strip_punctuation=False)("Mat.") == "mat."
    assert Normalizer(repair_mojibake=False)("doesn\u00d5t") == "doesn\u00f5t"  # NFKC+lower keeps the letter
    with pytest.raises(TypeError):
        Normalizer()(None)


def test_first_word():
    assert first_word(" Mat, and more") == "mat"
    assert first_word("\n\nThe end") == "the"
    assert first_word("   ") == NO_WORD
    assert first_word(" ... and") == NO_WORD  # the first chunk holds no word
    assert first_word("") == NO_WORD


# ----------------------------------------------------------------------------- splits
def test_paper_split_reproduces_published_ids():
    ids = list(range(1, 56))
    rest, test = train_test_split_ids(ids, 0.2, 42)
    train, validation = train_test_split_ids(rest, 0.1, 42)
    assert sorted(test) == PAPER_SPLIT["test"]
    assert sorted(validation) == PAPER_SPLIT["validation"]
    assert len(train) == 39 and not set(train) & (set(test) | set(validation))
    assert passage_split(ids) == {"train": sorted(train), "validation": PAPER_SPLIT["validation"], "test": PAPER_SPLIT["test"]}


def test_paper_split_counts(provo):
    splits = split_records(provo, "paper")
    assert {k: len(v) for k, v in splits.items()} == {"train": 1892, "validation": 258, "test": 536}
    kept = split_records(load_provo(merged_context="keep"), "paper")
    assert {k: len(v) for k, v in kept.items()} == {"train": 1893, "validation": 258, "test": 536}  # the paper's counts


def test_random_split_is_by_passage_seeded_and_disjoint(provo):
    a = split_records(provo, "random", test_size=0.3, validation_size=0.2, seed=7)
    b = split_records(provo, "random", test_size=0.3, validation_size=0.2, seed=7)
    c = split_records(provo, "random", test_size=0.3, validation_size=0.2, seed=8)
    pids = {k: {r["passage_id"] for r in v} for k, v in a.items()}
    assert pids == {k: {r["passage_id"] for r in v} for k, v in b.items()}
    assert pids != {k: {r["passage_id"] for r in v} for k, v in c.items()}
    assert not (pids["train"] & pids["test"]) and not (pids["train"] & pids["validation"]) and not (pids["test"] & pids["validation"])
    assert len(pids["test"]) == 17  # ceil(0.3 * 55)
    assert len(pids["validation"]) == 8  # ceil(0.2 * 38)
    assert sum(len(v) for v in a.values()) == len(provo)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2"])
def test_split_fraction_outside_unit_interval(bad):
    with pytest.raises(InputError, match="test_size"):
        passage_split(range(1, 56), test_size=bad)


# ----------------------------------------------------------------------------- packaged Provo
def test_packaged_provo_contents(provo):
    stats = Counter()
    records = load_provo(stats=stats)
    assert len(records) == 2686 and len({r["passage_id"] for r in records}) == 55
    first = records[0]
    assert first["id"] == "provo-01-002" and first["context"] == "There" and first["corpus_word"] == "are"
    assert first["answers"][:2] == [{"word": "are", "count": 16}, {"word": "is", "count": 9}]
    for r in records:
        counts = [a["count"] for a in r["answers"]]
        assert r["num_answers"] == sum(counts) and counts == sorted(counts, reverse=True)
        assert r["majority"] == r["answers"][0]["word"]
        assert all(a["word"] and a["word"] == Normalizer()(a["word"]) for a in r["answers"])
        assert len(r["context"].split()) == r["word_position"] - 1
    # the defects: merged (18, 3) dropped; dash/punctuation-only answers dropped
    assert not any((r["passage_id"], r["word_position"]) == (18, 3) for r in records)
    assert stats["dropped_contexts"] == 1 and stats["dropped_answers_merged"] == 82
    _, rows = read_packaged()
    raw_total = sum(c for _, _, _, c, _ in rows)
    assert raw_total == 107785
    assert sum(r["num_answers"] for r in records) == raw_total - 82 - stats["dropped_answers"]
    assert stats["dropped_answers"] >= 35  # the 35 dash-only answers at least
    # contexts of one passage are prefixes of each other; mojibake repaired; passage 36 has no stray dash
    p36 = [r["context"] for r in records if r["passage_id"] == 36]
    assert all(b.startswith(a) for a, b in zip(p36, p36[1:]))
    assert not any("\u00d5" in r["context"] or " \u2014 " in r["context"] for r in records)
    assert any("\u2019" in r["context"] for r in records if r["passage_id"] == 27)


def test_merged_context_keep_and_bad_value():
    kept = load_provo(merged_context="keep")
    merged = [r for r in kept if (r["passage_id"], r["word_position"]) == (18, 3)]
    assert len(kept) == 2687 and merged[0]["num_answers"] == 82
    with pytest.raises(InputError, match="merged_context"):
        load_provo(merged_context="maybe")


# ----------------------------------------------------------------------------- official CSV format
HEADER = ["Word_Unique_ID", "Text_ID", "Text", "Word_Number", "Sentence_Number", "Word_In_Sentence_Number",
          "Word", "Response", "Response_Count", "Total_Response_Count", "Response_Proportion"]
TEXT1 = "The cat doesn\u00d5t sit \u00d1 on mats."
TEXT2 = "Dogs bark loudly."


def write_official_csv(path, rows=None, encoding="cp1252"):
    """A small file in the official layout: cp1252, MacRoman quote byte, ' Ñ' token, NA-like answers."""
    if rows is None:
        rows = [
            ("QID1", 1, TEXT1, 2, "cat", "cat", 3),
            ("QID1", 1, TEXT1, 2, "cat", "dog", 2),
            ("QID1", 1, TEXT1, 2, "cat", "Dog.", 1),
            ("QID2", 1, TEXT1, 4, "sit", "like", 4),
            ("QID2", 1, TEXT1, 4, "sit", "null", 1),
            ("QID2", 1, TEXT1, 4, "sit", "-----", 1),
            ("QID3", 1, TEXT1, 5, "on", "NA", 2),
            ("QID3", 1, "The cat doesn't sit \u00d1 on mats.", 5, "on", "on", 2),
            ("QID4", 2, TEXT2, 3, "loudly.", "at", 5),
        ]
    lines = [",".join(HEADER)]
    for qid, tid, text, wn, word, resp, count in rows:
        lines.append(f'{qid},{tid},"{text}",{wn},1,{wn},{word},{resp},{count},{count},0.5')
    Path(path).write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def test_official_csv_format(tmp_path):
    path = write_official_csv(tmp_path / "Provo_Corpus-Predictability_Norms.csv")
    assert b"\xd5" in path.read_bytes()  # the MacRoman apostrophe byte, as in the real file
    stats = Counter()
    records = load_provo(path, stats=stats)
    by_id = {r["id"]: r for r in records}
    assert list(by_id) == ["provo-01-002", "provo-01-004", "provo-01-005", "provo-02-003"]
    assert by_id["provo-01-002"]["answers"] == [{"word": "dog", "count": 3}, {"word": "cat", "count": 3}][::-1]
    assert by_id["provo-01-002"]["majority"] == "cat"  # tie broken alphabetically
    assert by_id["provo-01-004"]["context"] == "The cat doesn\u2019t"
    # 'null' and 'NA' stay words (keep_default_na=False); the dash answer is dropped
    assert {a["word"] for a in by_id["provo-01-004"]["answers"]} == {"like", "null"}
    assert by_id["provo-01-005"]["answers"] == [{"word": "na", "count": 2}, {"word": "on", "count": 2}]
    assert by_id["provo-01-005"]["context"] == "The cat doesn\u2019t sit"  # the ' Ñ' token is not a word
    assert by_id["provo-01-005"]["corpus_word"] == "on"
    assert stats["dropped_answers"] == 1
    assert by_id["provo-02-003"]["corpus_word"] == "loudly."


def test_official_csv_sha256_and_encoding(tmp_path):
    path = write_official_csv(tmp_path / "norms.csv")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(load_provo(path, sha256=digest)) == 4
    with pytest.raises(InputError, match="sha256"):
        load_provo(path, sha256="0" * 64)
    with pytest.raises(InputError, match="unknown encoding"):
        load_provo(path, encoding="klingon-8")
    utf16 = write_official_csv(tmp_path / "utf16.csv", encoding="utf-16")
    with pytest.raises(InputError, match="cannot be decoded as utf-8"):
        load_provo(utf16, encoding="utf-8")
    mac = write_official_csv(tmp_path / "mac.csv", encoding="mac_roman")
    assert load_provo(mac, encoding="mac_roman")[1]["context"] == "The cat doesn\u2019t"


def test_official_csv_bad_input(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_provo(empty)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("Text_ID,Text,Word_Number\n1,a b,2\n")
    with pytest.raises(InputError, match="missing column.*Response"):
        load_provo(nocol)
    bad = write_official_csv(tmp_path / "bad.csv", rows=[("Q", 1, TEXT2, 2, "bark", "woof", -1)])
    with pytest.raises(InputError, match=r"bad\.csv:2: count '-1' is not a positive integer"):
        load_provo(bad)
    out_of_range = write_official_csv(tmp_path / "range.csv", rows=[("Q", 1, TEXT2, 9, "x", "woof", 1)])
    with pytest.raises(InputError, match="Word_Number 9 outside"):
        load_provo(out_of_range)
    only_junk = write_official_csv(tmp_path / "junk.csv", rows=[("Q", 1, TEXT2, 2, "bark", "---", 3)])
    with pytest.raises(InputError, match="no usable answers"):
        load_provo(only_junk)
    with pytest.raises(FileNotFoundError):
        load_provo(tmp_path / "missing.csv")


def test_download_provo_csv_from_local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    src = write_official_csv(served / "norms.csv")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/norms.csv"
        dest = tmp_path / "cache"
        dest.mkdir()
        got = download_provo_csv(dest, url=url, sha256=digest)
        assert got.read_bytes() == src.read_bytes() and got.name == "Provo_Corpus-Predictability_Norms.csv"
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(InputError, match="sha256"):
            download_provo_csv(other, url=url, sha256="1" * 64)
        assert list(other.iterdir()) == []  # nothing left behind
        with pytest.raises(InputError, match="download failed"):
            download_provo_csv(other, url=url + ".absent", sha256=None)
        assert list(other.iterdir()) == []
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------- generic cloze files
def test_generic_tsv_csv_jsonl(tmp_path):
    rows = [
        ("The cat sat on the", "mat", 3),
        ("The cat sat on the", "Floor.", 1),
        ("The cat sat on the mat", "and", 2),
        ("A dog", "barked", 1),
    ]
    tsv = tmp_path / "norms.tsv"
    tsv.write_text("context\tanswer\tcount\n" + "".join(f"{c}\t{a}\t{n}\n" for c, a, n in rows))
    csvf = tmp_path / "norms.csv"
    csvf.write_text("ctx,resp,n\n" + "".join(f"{c},{a},{n}\n" for c, a, n in rows))
    jsonl = tmp_path / "norms.jsonl"
    jsonl.write_text("".join(json.dumps({"context": c, "answer": a}) + "\n" for c, a, n in rows for _ in range(n)))
    a = load_cloze_file(tsv)
    b = load_cloze_file(csvf, context_column="ctx", answer_column="resp", count_column="n", source="norms")
    c = load_cloze_file(jsonl)
    assert a == b == c
    assert [r["passage_id"] for r in a] == [1, 1, 2]  # the second context extends the first
    assert a[0]["answers"] == [{"word": "mat", "count": 3}, {"word": "floor", "count": 1}]
    assert a[1]["word_position"] == 7 and a[1]["id"] == "norms-01-007"


def test_generic_passage_column_and_target(tmp_path):
    f = tmp_path / "n.tsv"
    f.write_text("passage\tcontext\tanswer\ttarget\nA\tHello\tthere\tworld\nB\tHello\tfriend\tyou\n")
    recs = load_cloze_file(f)
    assert [(r["passage_id"], r["corpus_word"]) for r in recs] == [(1, "world"), (2, "you")]


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("", ".tsv", "empty"),
        ("context\tword\nabc\tx\n", ".tsv", "missing column.*answer"),
        ("context\tanswer\tcount\nabc\tx\t0\n", ".tsv", r"n\.tsv:2: count '0' is not a positive integer"),
        ("context\tanswer\tcount\nabc\tx\tmany\n", ".tsv", "is not a number"),
        ("context\tanswer\nabc\t---\n", ".tsv", "no usable answers"),
        ("context\tanswer\n", ".tsv", "no data rows"),
        ('{"context": "a", "answer": "b"}\nnot json\n', ".jsonl", r"n\.jsonl:2: invalid JSON"),
        ("x", ".parquet", "unsupported extension"),
    ],
)
def test_generic_bad_input(tmp_path, content, suffix, message):
    f = tmp_path / f"n{suffix}"
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        load_cloze_file(f)


# ----------------------------------------------------------------------------- label views
REC = {"id": "r1", "corpus_word": "Mat.", "majority": "floor",
       "answers": [{"word": "floor", "count": 3}, {"word": "mat", "count": 2}, {"word": "sofa", "count": 1}]}


def test_label_views():
    assert label_distribution(REC, "corpus") == [("mat", 1.0)]
    assert label_distribution(REC, "majority") == [("floor", 1.0)]
    assert label_distribution(REC, "all") == [("floor", 0.5), ("mat", 2 / 6), ("sofa", 1 / 6)]
    assert label_distribution(REC, "sample_k", k=6) == label_distribution(REC, "all")
    assert label_distribution(REC, "sample_k", k=100) == label_distribution(REC, "all")


def test_sample_k_seeded_and_drawn_from_bag():
    one = label_distribution(REC, "sample_k", k=2, seed=1)
    assert one == label_distribution(REC, "sample_k", k=2, seed=1)
    assert abs(sum(p for _, p in one) - 1) < 1e-12 and all(p in (0.5, 1.0) for _, p in one)
    draws = Counter()
    for seed in range(600):
        for w, p in label_distribution(REC, "sample_k", k=1, seed=seed):
            draws[w] += 1
    # k=1 draws a single answer with probability count/total: 3/6, 2/6, 1/6
    assert 0.43 < draws["floor"] / 600 < 0.57 and 0.1 < draws["sofa"] / 600 < 0.23
    other = dict(REC, id="r2")
    assert [label_distribution(other, "sample_k", k=1, seed=s) for s in range(20)] != [
        label_distribution(REC, "sample_k", k=1, seed=s) for s in range(20)
    ]


def test_label_view_errors():
    with pytest.raises(InputError, match="label_mode"):
        label_distribution(REC, "soft")
    with pytest.raises(InputError, match="`k`"):
        label_distribution(REC, "sample_k", k=0)
    with pytest.raises(InputError, match="empty after normalisation"):
        label_distribution(dict(REC, corpus_word="--"), "corpus")


# ----------------------------------------------------------------------------- Hub folder
def test_hub_folder_round_trip(tmp_path, provo):
    from datasets import load_dataset

    splits = split_records(provo, "paper")
    out = build_dataset_folder(tmp_path / "provo_cloze", splits)
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert not list(out.glob("*.py"))
    dsd = load_dataset(str(out))
    assert {k: len(v) for k, v in dsd.items()} == {"train": 1892, "validation": 258, "test": 536}
    assert dsd["test"].to_list() == splits["test"]
    assert dsd["train"].features["answers"].feature["count"].dtype == "int32"
    assert [p.name for p in tmp_path.iterdir()] == ["provo_cloze"]  # no temporary folders left


def test_hub_folder_refuses_overwrite_and_cleans_up_on_failure(tmp_path, provo, monkeypatch):
    splits = split_records(provo[:50], "paper")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        build_dataset_folder(out, splits)
    assert (out / "mine.txt").read_text() == "keep me"

    import datasets

    def boom(self, *a, **k):
        raise OSError("disk full")

    # --overwrite never replaces a folder varylm did not write (issue #10 item 2)
    with pytest.raises(InputError, match="varylm did not write this folder"):
        build_dataset_folder(out, splits, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    build_dataset_folder(out, splits)  # an empty folder is fine
    monkeypatch.setattr(datasets.Dataset, "to_parquet", boom)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OSError):
        build_dataset_folder(out, splits, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before  # a failed rewrite leaves the old build as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    monkeypatch.undo()
    build_dataset_folder(out, splits, overwrite=True)  # varylm's own folder: replaced
    assert (out / "README.md").exists()


def test_committed_dataset_card_is_current():
    stats = Counter()
    records = load_provo(stats=stats)
    card = render_card(split_records(records, "paper"), meta={"normalizer": Normalizer().to_dict(), "stats": stats})
    assert (ROOT / "dataset_card.md").read_text(encoding="utf-8") == card, "regenerate: varylm data build --out /tmp/x && cp /tmp/x/README.md dataset_card.md"
    assert "2,686 contexts" in card and "| test | 11 | 536 |" in card


# ----------------------------------------------------------------------------- CLI
def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "varylm_hf.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_cli_build_and_summary(tmp_path):
    res = run_cli("data", "build", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "provo_cloze" / "README.md").exists()
    res = run_cli("data", "summary", "provo_cloze", cwd=tmp_path)
    assert res.returncode == 0 and "test" in res.stdout and "536" in res.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "build", "--out", "o", "--split", "random", "--test-size", "1.5"], "`test_size` must be a fraction"),
        (["data", "build", "--out", "o", "--cloze-file", "nope.tsv"], "nope.tsv: no such file"),
        (["data", "build", "--out", "o", "--provo-csv", "bad.csv"], "bad.csv:2: count"),
        (["data", "summary", "absent_dir"], "absent_dir: no such dataset folder"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(tmp_path, args, message):
    write_official_csv(tmp_path / "bad.csv", rows=[("Q", 1, TEXT2, 2, "bark", "woof", 0)])
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and message in res.stderr
    assert len([line for line in res.stderr.strip().splitlines() if line.startswith("varylm:")]) == 1
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_cli_help():
    for args in (["--help"], ["data", "--help"], ["data", "build", "--help"]):
        res = run_cli(*args, cwd=ROOT)
        assert res.returncode == 0 and "usage: varylm" in res.stdout


def test_dataset_card_is_a_hub_dataset_card_with_its_configs():
    from huggingface_hub import DatasetCard

    card = DatasetCard((ROOT / "dataset_card.md").read_text(encoding="utf-8"))
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["pretty_name"] == "Provo cloze norms"
    files = {f["split"]: f["path"] for f in data["configs"][0]["data_files"]}
    assert files == {s: f"data/{s}-*.parquet" for s in ("train", "validation", "test")}
    assert sum(s["num_examples"] for s in data["dataset_info"]["splits"]) == 2686  # merged context dropped
    assert "{{" not in card.text and "| train |" in card.text  # every template value filled
