"""The web page in headless Chromium, driven over the DevTools protocol (--remote-debugging-pipe:
JSON messages on fds 3/4, no extra packages): type a prompt into the textarea, click the button,
watch the text stream in, hover a token for its probabilities, save a screenshot."""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from serve_util import call, make_tiny_model, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package) is not installed")


def _pipe_fds(to_chrome, from_chrome):
    # Copy both above 10 first, so moving one onto 3 or 4 cannot clobber the other.
    a, b = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 10)
    os.dup2(a, 3)
    os.dup2(b, 4)


class DevTools:
    """A minimal CDP client over Chromium's pipe transport (NUL-separated JSON)."""

    def __init__(self, user_dir):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-pipe",
             f"--user-data-dir={user_dir}", "--window-size=1100,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
            # Chromium reads commands from fd 3 and writes replies to fd 4. (close_fds=False: the
            # close step runs after preexec_fn and would close the new 3 and 4.)
            preexec_fn=lambda: _pipe_fds(to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.session = b"", 0, None

    def send(self, method, params=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            ready, _, _ = select.select([self._r], [], [], 0.5)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        raise TimeoutError(method)

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        return r["result"].get("value")

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._w)
        os.close(self._r)


def wait_for(dev, expr, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.eval(expr):
            return True
        time.sleep(0.1)
    return False


def test_type_prompt_click_generate_see_streamed_text(tmp_path):
    model = make_tiny_model(tmp_path / "opt-web.pt")
    prompt = "Paris is the capital city of"
    with serve(model) as server:
        want = call("POST", server.url + "/v1/completions",
                    {"model": "opt-web", "prompt": prompt, "max_tokens": 24, "temperature": 0})[1]["choices"][0]["text"]
        dev = DevTools(tmp_path / "chromium-profile")
        try:
            target = dev.send("Target.createTarget", {"url": server.url + "/"})["targetId"]
            dev.session = dev.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            dev.send("Page.enable")
            dev.send("Runtime.enable")
            assert wait_for(dev, "document.readyState === 'complete' && document.getElementById('model').textContent === 'opt-web'")
            # Set the parameters, then type the prompt with real key input and click the button.
            dev.eval("document.getElementById('temperature').value = '0';"
                     "document.getElementById('max_tokens').value = '24'; true")
            dev.eval("document.getElementById('prompt').focus(); true")
            dev.send("Input.insertText", {"text": prompt})
            assert dev.eval("document.getElementById('prompt').value") == prompt
            box = dev.eval("(() => { const r = document.getElementById('generate').getBoundingClientRect();"
                           " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
            for kind in ("mousePressed", "mouseReleased"):
                dev.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                      "clickCount": 1})
            assert wait_for(dev, "document.getElementById('output').dataset.state === 'done'"), \
                dev.eval("document.getElementById('output').innerText")
            text = dev.eval("document.getElementById('output').innerText")
            chunks = int(dev.eval("document.getElementById('output').dataset.chunks"))
            assert text == prompt + want
            assert chunks > 5  # it arrived as a stream, not in one piece
            # Token probabilities on hover: every token span carries a tooltip.
            tip = dev.eval("document.querySelector('#output .tok').dataset.tip")
            assert tip and "%" in tip
            first = dev.eval("(() => { const r = document.querySelector('#output .tok').getBoundingClientRect();"
                             " return [r.x + 2, r.y + r.height / 2]; })()")
            dev.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": first[0], "y": first[1]})
            time.sleep(0.2)
            shot = tmp_path / "web_page.png"
            shot.write_bytes(base64.b64decode(dev.send("Page.captureScreenshot", {"format": "png"})["data"]))
            assert shot.stat().st_size > 10_000
            print(f"\nscreenshot: {shot}")
        finally:
            dev.close()
