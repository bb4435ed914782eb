"""Starting and stopping `optforge serve` in tests: a free loopback port (--port 0, the URL read
from the first line of stdout), bounded waits everywhere, and SIGTERM (then SIGKILL) on exit."""
import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from conftest import optforge_path, run_optforge


def make_tiny_model(path, layers=2, embed_dim=64, heads=4):
    run_optforge("demo-model", "-o", path, "--shape", "125m", "--layers", layers, "--embed-dim", embed_dim,
                 "--heads", heads)
    return str(path)


class Server:
    def __init__(self, proc, url, stderr_lines):
        self.proc, self.url, self._stderr = proc, url, stderr_lines
        self._model_id = None

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    @property
    def model_id(self):
        """The id the server gives its model (GET /v1/models), which requests must name."""
        if self._model_id is None:
            status, body = call("GET", self.url + "/v1/models")
            assert status == 200, body
            self._model_id = body["data"][0]["id"]
        return self._model_id

    def stderr(self):
        return "".join(self._stderr)

    def stop(self, timeout=20):
        """SIGTERM, wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self):
        """SIGKILL (what `kill -9` and the OOM killer send: no handler runs), then wait. Returns
        the exit code."""
        self.proc.kill()
        return self.proc.wait(timeout=10)


@contextlib.contextmanager
def serve(model, *args, port=0, threads=2, start_timeout=60):
    """`optforge serve MODEL ARGS` on loopback `port` (0: a free one; the Server's url says
    which), yielded once it listens; stopped (SIGTERM, then SIGKILL) on leaving."""
    cmd = [optforge_path(), "serve", str(model), "--port", str(port), "--threads", str(threads), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    url_box = []
    reader = threading.Thread(target=lambda: url_box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(start_timeout)
    server = Server(proc, "", stderr_lines)
    try:
        line = url_box[0] if url_box else ""
        if "http://" not in line:
            raise AssertionError(f"optforge serve did not start: {line!r}\n{''.join(stderr_lines)}")
        server.url = line[line.index("http://"):].split()[0].rstrip("/")
        yield server
    finally:
        server.stop()


def complete(server, prompt, max_tokens=24, **fields):
    """The text of one greedy completion (POST /v1/completions, temperature 0); asserts 200."""
    status, body = call("POST", server.url + "/v1/completions",
                        {"model": server.model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                         **fields})
    assert status == 200, body
    return body["choices"][0]["text"]


def call(method, url, body=None, headers=None, timeout=60, raw=None):
    """(status, parsed JSON or text). `body` is JSON-encoded unless `raw` bytes are given."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type", "")
    return status, (json.loads(text) if ctype.startswith("application/json") else text)


def metric(text, name):
    """The value of an unlabelled sample (or the sum of a labelled family's samples)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or key.startswith(name + "{"):
            total += float(value)
            found = True
    if not found:
        raise KeyError(name)
    return total


def wait_until(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
