#!/usr/bin/env bash
# Tokens per second of `optforge tokenize` against Hugging Face's GPT2TokenizerFast (Rust) and
# GPT2Tokenizer (Python) built from the same data/opt-tokenizer files, on the same generated text:
# the mixed-script corpus of the tokenizer tests (tests/python/tokenizer_reference.py) and plain
# English-like word text.
# optforge is timed end to end (process start, loading the vocab, JSON lines in and out); the HF
# tokenizers only for the encode call, on one thread (their batch encoder would use rayon).
#
#   bench/tokenize.sh [MB per text kind, default 3]     env: OPTFORGE_BIN, PYTHON, SLOW_SECONDS
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export OPTFORGE_BIN=${OPTFORGE_BIN:-$ROOT/build/optforge}
export RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-$ROOT/.venv/bin/python}" - "$ROOT" "${1:-3}" <<'PY'
import json, os, random, subprocess, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
root, mb = sys.argv[1], float(sys.argv[2])
sys.path.insert(0, os.path.join(root, "tests", "python"))
from tokenizer_reference import WORDS, as_input_lines, make_corpus  # the test corpus generator
from transformers import GPT2Tokenizer, GPT2TokenizerFast

vocab, merges = (os.path.join(root, "data", "opt-tokenizer", f) for f in ("vocab.json", "merges.txt"))
fast = GPT2TokenizerFast(vocab, merges)
slow = GPT2Tokenizer(vocab, merges)
slow_budget = float(os.environ.get("SLOW_SECONDS", "15"))

def words_text(target):
    rng, lines, size = random.Random(3), [], 0
    while size < target:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + rng.choice([".", ",", "!", " 2024.", ""])
        lines.append(line)
        size += len(line.encode()) + 1
    return lines

def mixed_text(target):
    corpus = make_corpus(n=max(10000, int(target / 100)), seed=11)
    out, size = [], 0
    for s in corpus:
        if size >= target:
            break
        out.append(s)
        size += len(s.encode()) + 1
    return out

def run_optforge(lines):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(as_input_lines(lines))
    try:
        t0 = time.perf_counter()
        with open(f.name) as inp:
            out = subprocess.run([os.environ["OPTFORGE_BIN"], "tokenize", "--no-bos"], stdin=inp,
                                 capture_output=True, text=True, check=True).stdout
        dt = time.perf_counter() - t0
    finally:
        os.unlink(f.name)
    return [json.loads(l) for l in out.split("\n")[:-1]], dt

def run_fast(lines):
    t0 = time.perf_counter()
    ids = fast(lines, add_special_tokens=False)["input_ids"]
    return ids, time.perf_counter() - t0

def run_slow(lines):
    ids, t0 = [], time.perf_counter()
    for s in lines:  # stops after the time budget: it is far slower than the others
        ids.append(slow.encode(s, add_special_tokens=False))
        if time.perf_counter() - t0 > slow_budget:
            break
    return ids, time.perf_counter() - t0

print(f"{'text':<8} {'tokenizer':<26} {'MB':>6} {'seconds':>8} {'tokens':>10} {'tokens/s':>12} {'MB/s':>7}")
for kind, lines in (("english", words_text(mb * 1e6)), ("mixed", mixed_text(mb * 1e6))):
    results = {}
    for name, fn in (("optforge tokenize (CLI)", run_optforge), ("HF GPT2TokenizerFast", run_fast),
                     ("HF GPT2Tokenizer (slow)", run_slow)):
        ids, dt = fn(lines)
        done = lines[:len(ids)]
        size = sum(len(s.encode()) + 1 for s in done) / 1e6
        ntok = sum(map(len, ids))
        results[name] = ids
        print(f"{kind:<8} {name:<26} {size:6.2f} {dt:8.2f} {ntok:10d} {ntok / dt:12,.0f} {size / dt:7.2f}")
    same = results["optforge tokenize (CLI)"] == results["HF GPT2TokenizerFast"]
    print(f"{kind:<8} optforge ids == HF fast ids on all {len(lines)} lines: {same}")
PY
