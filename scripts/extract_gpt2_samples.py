"""Build varylm_hf/data/provo/gpt2_samples_test.json.gz (real GPT-2 samples, paper test passages).

Input: the Ilia & Aziz (2024) files Paragraphs_temp-*.json (see /work/shared/data/provo/SOURCE.txt);
run from the repository root: python scripts/extract_gpt2_samples.py [FOLDER]
"""
import glob
import gzip
import json
import sys

TEST = [6, 13, 14, 20, 27, 32, 33, 42, 44, 50, 53]
rows = []
for f in sorted(glob.glob((sys.argv[1] if len(sys.argv) > 1 else '../shared/data/provo/evgeniael_predict_next_word') + '/*.json')):
    d = json.load(open(f))
    for pid, ws in d.items():
        if int(pid) not in TEST:
            continue
        for wn, e in ws.items():
            rows.append({"passage_id": int(pid), "word_position": int(wn), "context": e["context"]["text"],
                         "samples": [[a["pred"], a["count"]] for a in sorted(e["ancestral_samples"], key=lambda a: (-a["count"], a["pred"]))]})
rows.sort(key=lambda r: (r["passage_id"], r["word_position"]))
out = {
    "description": "40 ancestral samples of GPT-2 small (124M) per Provo context, each sliced to its first word, "
                   "for the passages of the paper's test split. Model output, not human data.",
    "model": "gpt2",
    "split": "paper test",
    "passages": TEST,
    "failure_label": "Failed to generate word",
    "surface_forms": "as stored: case kept, all punctuation removed by the original code (I'd -> Id, 's -> s)",
    "source": "github evgeniael/predict_next_word (Ilia & Aziz, EACL 2024) commit 027ffaa8eb9cd526e476417b654e10f271145210, "
              "TVD/GPT2_Temp/Generations/Paragraphs_temp-*.json, field ancestral_samples",
    "citation": "Ilia, E. & Aziz, W. (2024). Predict the Next Word: <Humans exhibit uncertainty in this task and language models _____>. EACL.",
    "contexts": rows,
}
with gzip.GzipFile('varylm_hf/data/provo/gpt2_samples_test.json.gz', 'wb', mtime=0) as fh:
    fh.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode())
print(len(rows))
