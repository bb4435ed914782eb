"""Load generator for `optforge serve`: C concurrent clients on loopback, each sending streamed
greedy completions one after another; reports throughput and time-to-first-token / per-token
latency percentiles as JSON. Standard library only (http.client), so the client costs little
next to the server on a small machine; its own CPU time is reported (client_cpu_s) to show it.
With --shared-prefix N every prompt starts with the same N tokens (a system prompt) and then
differs. While the load runs, /metrics is read every 50 ms for the most KV cache tokens in use.

usage: serve_load.py URL MODEL_ID --clients C --requests R --max-tokens T --prompt-tokens P
                     [--shared-prefix N]
"""
import argparse
import http.client
import json
import re
import statistics
import threading
import time
import urllib.parse


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def one_request(host, port, body):
    """(ttft, [inter-token gaps], tokens) for one streamed completion."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    times = []
    while True:
        line = r.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        if line.startswith(b"data: [DONE]"):
            break
        # One chunk per generated token (finish_reason null); a byte test rather than json.loads
        # keeps the client's share of a small machine's CPU low.
        if b'"finish_reason":null' in line:
            times.append(time.perf_counter())
    conn.close()
    if not times:
        raise RuntimeError("no tokens")
    return times[0] - t0, [b - a for a, b in zip(times, times[1:])], len(times)


def peak_kv_tokens(host, port, stop, out):
    """Polls /metrics until `stop` is set; out[0] = the most optforge_kv_cache_used_tokens seen."""
    while not stop.is_set():
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        m = re.search(r"^optforge_kv_cache_used_tokens (\S+)$", text, re.M)
        if m:
            out[0] = max(out[0], float(m.group(1)))
        stop.wait(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("model")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--requests", type=int, default=4, help="per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--shared-prefix", type=int, default=0, help="tokens every prompt starts with")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    ttfts, gaps, tokens, errors = [], [], [0], []
    lock = threading.Lock()

    def client(k):
        for i in range(a.requests):
            # Distinct prompts (token ids), all of one length; ignore_eos keeps every length equal.
            prefix = [2] + [3 + (j * 7907) % 50000 for j in range(a.shared_prefix)]
            ids = prefix + [3 + (k * 7919 + i * 104729 + j * 7907) % 50000 for j in range(a.prompt_tokens - 1)]
            body = json.dumps({"model": a.model, "prompt": ids, "max_tokens": a.max_tokens, "temperature": 0,
                               "stream": True, "ignore_eos": True})
            try:
                t, g, n = one_request(u.hostname, u.port, body)
            except Exception as e:  # noqa: BLE001 (reported, not fatal to the others)
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                ttfts.append(t)
                gaps.extend(g)
                tokens[0] += n

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    stop, peak = threading.Event(), [0.0]
    poller = threading.Thread(target=peak_kv_tokens, args=(u.hostname, u.port, stop, peak))
    poller.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    poller.join()
    print(json.dumps({
        "clients": a.clients, "requests": len(ttfts), "errors": len(errors), "first_error": errors[0] if errors else None,
        "tokens": tokens[0], "seconds": wall, "tokens_per_s": tokens[0] / wall,
        "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99),
        "tpot_p50": percentile(gaps, 50), "tpot_p99": percentile(gaps, 99),
        "tpot_mean": statistics.fmean(gaps) if gaps else float("nan"),
        "client_cpu_s": cpu, "peak_kv_tokens": peak[0],
    }))


if __name__ == "__main__":
    main()
