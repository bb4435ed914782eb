"""Soak test for `optforge serve`: mixed load for a while, then whether anything grew.

Worker threads send, at random, until the time is up: streamed and whole completions (some with
logprobs, some with best_of), chat completions streamed and not (the `openai` client), streams
the client walks away from after the first event (a raw socket closed mid-answer), and bad
requests (malformed JSON, an unknown field, a wrong model) that must get their 4xx. Every 10 s
the server's resident memory (VmRSS) and open file descriptors are read from /proc. Prints the
first sample after warm-up, the last, the largest, and the count of each kind of request; exits 1
on any answer but the intended one.

usage: soak.py OPTFORGE_BIN MODEL --seconds S [--workers W] [--threads T] [-- SERVE_OPTIONS...]
"""
import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import openai


def start(binary, model, threads, extra):
    """The server, its URL, and its start-up line (which gives the KV cache pool's size)."""
    proc = subprocess.Popen([binary, "serve", model, "--port", "0", "--threads", str(threads), "--max-batch", "16",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = proc.stderr.readline().strip()
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining it
    line = proc.stdout.readline()
    return proc, line[line.index("http://"):].split()[0].rstrip("/"), banner


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def raw(url, method, path, body):
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request(method, path, body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def walk_away(url, model):
    """A streamed completion whose client closes the socket after the first event."""
    host, port = url.split("//")[1].split(":")
    body = json.dumps({"model": model, "prompt": "Once upon a time", "max_tokens": 200, "stream": True,
                       "ignore_eos": True}).encode()
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        got = b""
        while b"data: " not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed before the first event")
            got += chunk
    return "ok"


def one(kind, client, url, model, rng):
    prompt = rng.choice(["Hello", "The capital of France is", "def f(x):", "Once upon a time, there"])
    if kind == "stream":
        n = sum(1 for _ in client.completions.create(model=model, prompt=prompt, max_tokens=rng.randint(1, 48),
                                                      stream=True, temperature=0.8, seed=rng.randint(0, 9)))
        return "ok" if n > 0 else "no events"
    if kind == "logprobs":
        c = client.completions.create(model=model, prompt=prompt, max_tokens=16, logprobs=3, temperature=0)
        return "ok" if len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens else "logprobs mismatch"
    if kind == "best_of":
        c = client.completions.create(model=model, prompt=prompt, max_tokens=12, best_of=3, n=1, temperature=1.0)
        return "ok" if len(c.choices) == 1 and c.usage.completion_tokens >= 3 else "best_of shape"
    if kind in ("chat", "chat_stream"):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
        if kind == "chat":
            c = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, logprobs=True, top_logprobs=2)
            return "ok" if c.choices[0].message.role == "assistant" else "chat shape"
        n = sum(1 for _ in client.chat.completions.create(model=model, messages=msgs, max_tokens=24, stream=True))
        return "ok" if n > 1 else "no chunks"
    if kind == "walk_away":
        return walk_away(url, model)
    bad = {"bad_json": b'{"model": "x", "prompt": ', "bad_field": json.dumps({"model": model, "prompt": "a",
                                                                                 "no_such_field": 1}).encode(),
           "bad_model": json.dumps({"model": "nope", "prompt": "a"}).encode()}[kind]
    status, _ = raw(url, "POST", "/v1/completions", bad)
    return "ok" if status == (404 if kind == "bad_model" else 400) else f"status {status}"


KINDS = ["stream"] * 4 + ["logprobs", "best_of", "chat", "chat_stream", "walk_away", "bad_json", "bad_field",
                          "bad_model"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # more `optforge serve` options
    a = ap.parse_args(argv[:len(argv) - len(extra) - (1 if extra or "--" in argv else 0)])
    proc, url, banner = start(a.binary, a.model, a.threads, extra)
    print(banner)
    model = json.loads(raw(url, "GET", "/v1/models", None)[1])["data"][0]["id"]
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    counts, failures, lock = Counter(), Counter(), threading.Lock()
    deadline = time.monotonic() + a.seconds

    def worker(k):
        rng = random.Random(k)
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            try:
                outcome = one(kind, client, url, model, rng)
            except Exception as e:  # noqa: BLE001 (counted and reported)
                outcome = f"{type(e).__name__}: {str(e)[:120]}"
            with lock:
                counts[kind] += 1
                if outcome != "ok":
                    failures[f"{kind}: {outcome}"] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.workers)]
    for t in threads:
        t.start()
    samples = []
    while time.monotonic() < deadline:
        time.sleep(10)
        samples.append(sample(proc.pid))
    for t in threads:
        t.join()
    time.sleep(1)
    samples.append(sample(proc.pid))
    proc.terminate()
    proc.wait(30)
    warm = samples[min(5, len(samples) - 1)]  # after the first minute: pools and caches warmed up
    print(f"soak: {a.seconds:.0f} s, {a.workers} workers, {sum(counts.values())} requests: {dict(sorted(counts.items()))}")
    print(f"server RSS after warm-up {warm[0] / 1024:.1f} MiB, at the end {samples[-1][0] / 1024:.1f} MiB, "
          f"largest {max(s[0] for s in samples) / 1024:.1f} MiB; each minute: "
          + " ".join(f"{s[0] / 1024:.0f}" for s in samples[5::6]))
    print("(the KV cache pool is reserved at start and its pages are touched as blocks are first used: with prefix "
          "caching, cached blocks stay and new ones are taken, so RSS rises towards warm-up + the pool's size in "
          "the start-up line and stays there)")
    print(f"open file descriptors after warm-up {warm[1]}, at the end {samples[-1][1]}, "
          f"largest {max(s[1] for s in samples)}")
    print(f"answers other than the intended one: {sum(failures.values())}")
    for what, n in failures.most_common(10):
        print(f"  {n} x {what}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
