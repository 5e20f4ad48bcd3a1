#!/usr/bin/env python3
"""Rebuild varylm_hf/data/provo/provo_norms.json.gz from ../shared/data/provo/derived.

The package ships the Provo predictability norms (Luke & Christianson 2018, CC BY 4.0) in
this compact form: the 55 passage texts plus one (Text_ID, Word_Number, Response,
Response_Count) row per distinct raw response. Records are built from it at load time by
the same code that reads the official CSV (varylm_hf.data.provo.build_records).

    python scripts/build_provo_package_data.py [--src ../shared/data/provo/derived]
"""

import argparse
import csv
import gzip
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "varylm_hf", "data", "provo", "provo_norms.json.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=os.path.join(HERE, "..", "..", "shared", "data", "provo", "derived"))
    args = parser.parse_args()
    last: dict[int, tuple[int, str, str]] = {}
    with open(os.path.join(args.src, "provo_contexts.tsv"), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            tid, wn = int(row["Text_ID"]), int(row["Word_Number"])
            if tid not in last or wn > last[tid][0]:
                last[tid] = (wn, row["Context"], row["Word"])
    passages = {str(t): f"{c} {w}" for t, (_, c, w) in sorted(last.items())}
    responses = []
    with open(os.path.join(args.src, "provo_responses.tsv"), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            responses.append([int(row["Text_ID"]), int(row["Word_Number"]), row["Response"], int(row["Response_Count"])])
    payload = {
        "description": "Provo Corpus predictability norms (Luke & Christianson 2018), responses with counts.",
        "license": "CC BY 4.0",
        "citation": "Luke, S. G., & Christianson, K. (2018). The Provo Corpus: A large eye-tracking corpus "
        "with predictability norms. Behavior Research Methods, 50(2), 826-833.",
        "source": "recovered from public derived files (github evgeniael/predict_next_word, "
        "TVD/GPT2_Temp/Generations/Paragraphs_temp-*.json); see dataset_card.md",
        "columns": ["Text_ID", "Word_Number", "Response", "Response_Count"],
        "passages": passages,
        "responses": responses,
    }
    with gzip.GzipFile(OUT, "wb", mtime=0) as fh:
        fh.write(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    print(f"wrote {OUT}: {len(passages)} passages, {len(responses)} response rows")


if __name__ == "__main__":
    main()
