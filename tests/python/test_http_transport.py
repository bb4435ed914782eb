"""The HTTP transport of `optforge serve` against raw sockets and Python's own HTTP client
(http.client parses every answer; the expected answers are known a priori, never taken from the
server): malformed chunked framing, oversized heads and bodies, pipelining, a request split byte
by byte, `Expect: 100-continue`, keep-alive, slowloris (64+ connections trickling their heads),
connection caps per client address and in total, the SSE keep-alive comment while a request
waits in the queue, and CORS (off by default, --allowed-origins). After each abuse the server
must still answer a normal request."""
import http.client
import io
import json
import socket
import threading
import time

import pytest

from conftest import assert_usage_error, run_optforge
from serve_util import call, make_tiny_model, metric, serve, wait_until

HELLO = json.dumps({"content": "Hello world"}).encode()
HELLO_IDS = [31414, 232]  # GPT-2's ids for "Hello" and " world"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("transport") / "opt-tiny.pt")


@pytest.fixture(scope="module")
def server(model):
    with serve(model, "--max-body-bytes", 4096) as s:
        yield s


class _KeptOpen(io.BufferedReader):
    def close(self):  # http.client closes its file after each whole response
        pass


class _Reader:
    """One buffered reader for a socket, so several responses on it parse in sequence."""
    def __init__(self, sock):
        self.fp = _KeptOpen(socket.SocketIO(sock, "rb"))

    def makefile(self, *args, **kwargs):
        return self.fp


def read_response(reader, method="GET"):
    r = http.client.HTTPResponse(reader, method=method)
    r.begin()
    return r, r.read()


def connect(server, source=None, timeout=10):
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


def exchange(server, raw, method="POST"):
    """Sends `raw` on a fresh connection; (status, parsed body) of the one answer."""
    with connect(server) as s:
        s.sendall(raw)
        r, body = read_response(_Reader(s), method)
        return r.status, (json.loads(body) if r.getheader("Content-Type", "").startswith("application/json") else body)


def still_serving(server):
    status, body = call("GET", server.url + "/health", timeout=5)
    assert (status, body) == (200, {"status": "ok"})


def chunked_tokenize(size_line, data=HELLO):
    return (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n" + data + b"\r\n0\r\n\r\n")


def test_chunked_body_is_read(server):
    assert exchange(server, chunked_tokenize(b"%x" % len(HELLO))) == (200, {"tokens": HELLO_IDS})
    assert exchange(server, chunked_tokenize(b"%X;name=value;q=\"a b\"" % len(HELLO))) == (200, {"tokens": HELLO_IDS})


@pytest.mark.parametrize("size_line", [b"0x%x", b"+%x", b" %x", b"%x ", b"-%x", b"%x;a\nb", b"%x;a=\"x\ny\"",
                                       b"%x\n", b"1" + b"0" * 16 + b"%x"])
def test_malformed_chunk_sizes_are_400(server, size_line):
    line = size_line.replace(b"%x", b"%x" % len(HELLO))
    status, body = exchange(server, chunked_tokenize(line))
    assert status == 400 and "chunk" in body["error"]["message"], body
    still_serving(server)


def test_negative_chunk_size_cannot_rewind(server):
    # "-2" once wrapped past the 413 check; now the size is not a chunk size at all.
    raw = chunked_tokenize(b"-2", b"{}" + HELLO)
    status, body = exchange(server, raw)
    assert status == 400 and "chunk" in body["error"]["message"]
    still_serving(server)


def test_smuggling_framings_are_refused(server):
    head = b"POST /tokenize HTTP/1.1\r\nHost: x\r\n"
    assert exchange(server, head + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")[0] == 400
    assert exchange(server, head + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n")[0] == 400
    assert exchange(server, head + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}")[0] == 400
    assert exchange(server, head + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")[0] == 501
    assert exchange(server, head + b"X: a\r\n folded\r\nContent-Length: 2\r\n\r\n{}")[0] == 400
    assert exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "GET")[0] == 400
    still_serving(server)


def test_oversized_heads_and_bodies(server):
    big_header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20000 + b"\r\n\r\n"
    assert exchange(server, big_header, "GET")[0] == 431
    many_headers = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(3000)) + b"\r\n"
    assert exchange(server, many_headers, "GET")[0] == 431
    assert exchange(server, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "GET")[0] == 431
    # --max-body-bytes 4096: a declared length and a chunked body both stop at the limit.
    status, body = exchange(server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n" + b"x" * 4097)
    assert status == 413 and "4096" in body["error"]["message"]
    assert exchange(server, chunked_tokenize(b"1001", b"x" * 4097))[0] == 413
    two_chunks = (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"800\r\n" + b"x" * 2048 + b"\r\n801\r\n" + b"x" * 2049 + b"\r\n0\r\n\r\n")
    assert exchange(server, two_chunks)[0] == 413
    status, _ = exchange(server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" +
                         json.dumps({"content": "a" * 4070}).ljust(4096).encode())
    assert status == 200  # at the limit is fine
    still_serving(server)


def test_pipelined_requests_are_answered_in_order(server):
    requests = [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(HELLO) + HELLO,
                b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /detokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"18\r\n{\"tokens\": [31414, 232]}\r\n0\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    with connect(server) as s:
        s.sendall(b"".join(requests))
        reader = _Reader(s)
        answers = [read_response(reader, m) for m in ("GET", "POST", "GET", "POST", "GET")]
        assert s.recv(1) == b""  # closed after the request that asked for it
    assert [r.status for r, _ in answers] == [200, 200, 404, 200, 200]
    assert json.loads(answers[0][1]) == {"status": "ok"}
    assert json.loads(answers[1][1]) == {"tokens": HELLO_IDS}
    assert json.loads(answers[2][1])["error"]["code"] == "unknown_url"
    assert json.loads(answers[3][1]) == {"content": "Hello world"}
    assert [r.getheader("Connection") for r, _ in answers] == ["keep-alive"] * 4 + ["close"]


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for _ in range(20):
        conn.request("POST", "/tokenize", HELLO, {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"tokens": HELLO_IDS}
    assert conn.sock is sock  # never reconnected
    conn.close()


def test_request_split_byte_by_byte(server):
    raw = b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(HELLO) + HELLO
    with connect(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            s.sendall(raw[i:i + 1])
            time.sleep(0.002)
        r, body = read_response(_Reader(s), "POST")
    assert r.status == 200 and json.loads(body) == {"tokens": HELLO_IDS}


def test_expect_100_continue(server):
    with connect(server) as s:
        s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(HELLO))
        assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(HELLO)
        r, body = read_response(_Reader(s), "POST")
        assert r.status == 200 and json.loads(body) == {"tokens": HELLO_IDS}
    # Over the limit: the refusal comes instead of the 100, and the body need not be sent.
    with connect(server) as s:
        s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
        r, body = read_response(_Reader(s), "POST")
        assert r.status == 413 and "error" in json.loads(body)
    still_serving(server)


def test_slowloris_does_not_starve_normal_requests(model):
    """70 connections trickle their heads a byte a second; a normal request is still answered
    within a second, and each trickling connection gets 408 and is closed at the head deadline
    (--request-timeout 3), not later however it keeps sending."""
    n, timeout = 70, 3.0
    with serve(model, "--request-timeout", timeout, "--max-connections", 256,
               "--max-connections-per-client", 256) as s:
        slow = [connect(s) for _ in range(n)]
        start = time.monotonic()
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        answers, closed_at = [b""] * n, [None] * n

        def trickle():
            for i in range(len(head)):
                for k, c in enumerate(slow):
                    if closed_at[k] is None:
                        try:
                            c.sendall(head[i:i + 1])
                        except OSError:
                            pass
                for k, c in enumerate(slow):
                    if closed_at[k] is None:
                        c.setblocking(False)
                        try:
                            while True:
                                got = c.recv(4096)
                                if not got:
                                    closed_at[k] = time.monotonic() - start
                                    break
                                answers[k] += got
                        except (BlockingIOError, ConnectionResetError):
                            pass
                if all(t is not None for t in closed_at) or time.monotonic() - start > timeout + 4:
                    return
                time.sleep(1.0)

        t = threading.Thread(target=trickle)
        t.start()
        try:
            for _ in range(3):
                time.sleep(0.7)
                t0 = time.monotonic()
                status, body = call("GET", s.url + "/health", timeout=5)
                assert (status, body) == (200, {"status": "ok"})
                assert time.monotonic() - t0 < 1.0
        finally:
            t.join()
            for c in slow:
                c.close()
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
        assert all(t is not None and timeout - 0.5 < t < timeout + 2.5 for t in closed_at), closed_at
        still_serving(s)


def test_slowloris_from_one_address_leaves_room_for_others(model):
    """With the default caps (64 in total, 48 per address) 70 trickling connections from one
    address hold at most 48 slots: another address is still answered within a second."""
    with serve(model, "--request-timeout", 3) as s:
        slow = [connect(s) for _ in range(70)]
        try:
            for i in range(3):
                for c in slow:
                    try:
                        c.sendall(b"GET /health HTTP/1.1\r\n"[i:i + 1])
                    except OSError:
                        pass  # one of those closed at once: past the refusal threads
                time.sleep(0.5)
                with connect(s, source="127.0.0.2") as other:
                    t0 = time.monotonic()
                    other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    r, body = read_response(_Reader(other))
                    assert (r.status, json.loads(body)) == (200, {"status": "ok"})
                    assert time.monotonic() - t0 < 1.0
                assert gauge_from(s, "127.0.0.3", "optforge_http_connections") <= 50
        finally:
            for c in slow:
                c.close()


def gauge_from(server, source, name):
    with connect(server, source=source) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        return metric(read_response(_Reader(c))[1].decode(), name)


def test_connection_caps_per_client_and_in_total(model):
    with serve(model, "--max-connections", 6, "--max-connections-per-client", 3) as s:
        held = [connect(s) for _ in range(3)]
        time.sleep(0.3)
        status, body = exchange(s, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
        assert status == 429 and "127.0.0.1" in body["error"]["message"]
        # Another client address is not limited by the first one's connections.
        with connect(s, source="127.0.0.2") as other:
            other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(_Reader(other))[0].status == 200
            held += [connect(s, source=f"127.0.0.{i}") for i in (3, 4)]
            time.sleep(0.3)
            # 6 open in total: a seventh client is refused too.
            with connect(s, source="127.0.0.9") as last:
                last.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                r, body = read_response(_Reader(last))
                assert r.status == 429
                assert "too many concurrent connections (the limit is 6)" in json.loads(body)["error"]["message"]
        for h in held:
            h.close()
        assert wait_until(lambda: call("GET", s.url + "/health")[0] == 200, timeout=5)


def gauge(server, name):
    return metric(call("GET", server.url + "/metrics")[1], name)


def test_sse_keepalive_comment_while_queued(tmp_path):
    """One batch slot, taken by a long streamed request: a streamed request waiting in the queue
    gets ': keep-alive' comments (SSE comment lines, which clients ignore) before its first event;
    when it goes away while queued, its job leaves the queue and the running one is unaffected.
    The model is wider than the module's (E 256, 4 layers: ~64 MB of f32 weights read per token),
    so the 2000 tokens take seconds, not the one second the tiny one needs on a fast machine."""
    model = make_tiny_model(tmp_path / "opt-tiny.pt", layers=4, embed_dim=256)
    with serve(model, "--max-batch", 1, "--sse-keepalive", 0.2) as s:
        long_body = json.dumps({"model": "opt-tiny", "prompt": "Hi", "max_tokens": 2000, "ignore_eos": True,
                                "temperature": 0, "stream": True})
        running = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        running.request("POST", "/v1/completions", long_body, {"Content-Type": "application/json"})
        r1 = running.getresponse()
        assert r1.status == 200 and r1.readline().startswith(b"data: ")
        assert gauge(s, "optforge_batch_size") == 1
        queued = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        queued.request("POST", "/v1/completions", json.dumps({"model": "opt-tiny", "prompt": "Hi", "max_tokens": 2,
                                                               "stream": True}), {"Content-Type": "application/json"})
        r2 = queued.getresponse()
        assert r2.status == 200 and r2.getheader("Content-Type") == "text/event-stream"
        assert [r2.readline() for _ in range(4)] == [b": keep-alive\n", b"\n"] * 2
        assert gauge(s, "optforge_queue_depth") == 1
        queued.close()
        assert wait_until(lambda: gauge(s, "optforge_queue_depth") == 0, timeout=5)
        assert gauge(s, "optforge_batch_size") == 1 and r1.readline()  # still streaming
        running.close()
        assert wait_until(lambda: gauge(s, "optforge_batch_size") == 0, timeout=5)
        still_serving(s)


def cors_headers(server, method, path, headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, headers=headers)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders() if k.lower().startswith("access-control")}


def test_cors_is_off_by_default(server):
    status, h = cors_headers(server, "OPTIONS", "/v1/completions",
                             {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert status == 405 and h == {}
    assert cors_headers(server, "GET", "/health", {"Origin": "https://app.example"}) == (200, {})


def test_allowed_origins_enable_cors(model):
    with serve(model, "--allowed-origins", "https://app.example,https://two.example") as s:
        status, h = cors_headers(s, "OPTIONS", "/v1/completions",
                                 {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                  "Access-Control-Request-Headers": "authorization, content-type"})
        assert status == 204 and h["access-control-allow-origin"] == "https://app.example"
        assert "POST" in h["access-control-allow-methods"]
        assert h["access-control-allow-headers"] == "authorization, content-type"
        assert cors_headers(s, "GET", "/health", {"Origin": "https://two.example"}) == (
            200, {"access-control-allow-origin": "https://two.example"})
        assert cors_headers(s, "GET", "/health", {"Origin": "https://evil.example"}) == (200, {})
        status, h = cors_headers(s, "OPTIONS", "/v1/completions",
                                 {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert status == 405 and h == {}


def vary(server, headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/health", headers=headers)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, r.getheader("Vary")


def test_cors_responses_vary_by_origin(model, server):
    """With CORS on, an answer depends on the Origin asked from: every response says so (RFC 9110
    Vary), also to an origin that is not allowed and to a request without one; off, none does."""
    with serve(model, "--allowed-origins", "https://app.example,http://[::1]:8080") as s:
        for headers in ({"Origin": "https://app.example"}, {"Origin": "http://[::1]:8080"},
                        {"Origin": "https://evil.example"}, {}):
            assert vary(s, headers) == (200, "Origin"), headers
    assert vary(server, {"Origin": "https://app.example"}) == (200, None)


@pytest.mark.parametrize("bad,why", [
    ("https://app.example/", "no path"), ("https://a.example, https://b.example", "no path"),
    ("app.example", "no path"), ("https://app.example/path", "no path"), ("https://app.example:port", "no path"),
    ("HTTPS://App.example", "lower case"), ("https://app.example:443", "without :443"),
    ("http://app.example:80", "without :80"), ("https://app.example:99999", "1 to 65535")])
def test_allowed_origins_that_never_match_are_refused(model, bad, why):
    """A value no browser's Origin header can equal (browsers send the scheme and host in lower
    case and leave out the default port) would leave CORS silently off for it."""
    line = assert_usage_error(run_optforge("serve", model, "--allowed-origins", bad, check=False),
                              "--allowed-origins")
    assert "is not an origin as browsers send it" in line and why in line, line


@pytest.mark.parametrize("method,path,allow", [("GET", "/v1/chat/completions", "POST"),
                                               ("OPTIONS", "/v1/completions", "POST"),
                                               ("POST", "/health", "GET"), ("DELETE", "/metrics", "GET")])
def test_405_says_which_method_is_allowed(server, method, path, allow):
    """RFC 9110 §15.5.6: a 405 response carries Allow with the methods the resource takes."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=b"{}" if method == "POST" else None)
    r = conn.getresponse()
    r.read()
    conn.close()
    assert (r.status, r.getheader("Allow")) == (405, allow)
