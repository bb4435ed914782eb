"""Starting and stopping `optforge serve` in tests: a free loopback port (--port 0, the URL read
from the first line of stdout), bounded waits everywhere, and SIGTERM (then SIGKILL) on exit."""
import contextlib
import json
import os
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

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1].strip("/"))

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


@contextlib.contextmanager
def serve(model, *args, threads=2, start_timeout=60):
    cmd = [optforge_path(), "serve", str(model), "--port", "0", "--threads", str(threads), *map(str, args)]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    url_box = []
    reader = threading.Thread(target=lambda: url_box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(start_timeout)
    server = None
    try:
        line = url_box[0] if url_box else ""
        if "http://" not in line:
            raise AssertionError(f"optforge serve did not start: {line!r}\n{''.join(stderr_lines)}")
        url = line[line.index("http://"):].split()[0].rstrip("/")
        server = Server(proc, url, stderr_lines)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


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
