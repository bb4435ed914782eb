"""Hard kills (SIGKILL: what the OOM killer and `kill -9` send, and what power loss amounts to) never
leave a partial output under a final name or touch an input; what they leave is recognisably named
and removed by the next run on the same output. Complete outputs are compared byte for byte with an
uninterrupted run's, which is itself checked with torch, safetensors and transformers.
`optforge serve` killed under load restarts on the same port and answers as before.
tests/stress/hard_kill.py runs the same cases with 100 kill points each."""
import concurrent.futures
import os
import signal
import subprocess
import time
import zipfile
import zlib

import pytest
import torch

from conftest import assert_clean_error, optforge_path, run_optforge
from hard_kill_util import Case, exercise, signal_mid_write
from serve_util import complete, make_tiny_model, serve

KILL_POINTS = 20
# A 350m-shaped model (project_in/out, post-LN), small enough that a run takes a fraction of a second.
SHAPE = ["--shape", "350m", "--layers", "4", "--embed-dim", "512", "--heads", "8", "--vocab", "8192",
         "--positions", "256"]


def make_inputs(d):
    """The commands' inputs in folder `d`: SHAPE as MP 2 x FSDP 2 shards and as a singleton."""
    run_optforge("demo-model", *SHAPE, "--mp", 2, "--fsdp", 2, "-o", d / "sharded")
    run_optforge("demo-model", *SHAPE, "-o", d / "single.pt")
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("hard_kill_inputs"))


def cases(inputs, root):
    """The five kinds of output: a file, a folder, an HF folder, MP part files in a folder, a file
    converted from a file. Each writes into its own folder."""
    b, sharded, single = optforge_path(), inputs / "sharded", inputs / "single.pt"
    spec = {
        "consolidate": ([b, "consolidate", sharded, "-o", "{w}/c.pt", "-q"], ["c.pt"], [sharded]),
        "reshard": ([b, "reshard", sharded, "-o", "{w}/r", "--fsdp", "2", "--mp", "1", "-q"], ["r"], [sharded]),
        "convert-hf": ([b, "convert", single, "-o", "{w}/hf", "--to", "hf"], ["hf"], [single]),
        "convert-mp2": ([b, "convert", single, "-o", "{w}/mp2", "--to", "metaseq", "--mp", "2"], ["mp2"], [single]),
        "convert-file": ([b, "convert", single, "{w}/f32.pt", "--dtype", "f32"], ["f32.pt"], [single]),
    }
    out = {}
    for name, (argv, finals, ins) in spec.items():
        w = root / name
        w.mkdir()
        out[name] = Case(name, [str(a).replace("{w}", str(w)) for a in argv], w, finals, ins)
    return out


def check_reference(case, inputs):
    """The uninterrupted run's output, read by the real libraries."""
    single = torch.load(inputs / "single.pt")["model"]
    w = case.workdir
    if case.name == "consolidate":
        got = torch.load(w / "c.pt")["model"]
        assert got.keys() == single.keys() and all(torch.equal(got[k], single[k]) for k in got)
    elif case.name in ("reshard", "convert-mp2"):
        files = sorted((w / case.finals[0]).iterdir())
        assert len(files) == 2
        for f in files:
            assert zipfile.ZipFile(f).testzip() is None  # every record's CRC
            assert "flat_param_0" in torch.load(f)["model"]
    elif case.name == "convert-hf":
        from transformers import OPTForCausalLM
        m = OPTForCausalLM.from_pretrained(w / "hf", torch_dtype=torch.float16)
        sd = m.state_dict()
        for k, v in single.items():
            if k != "decoder.version":
                assert torch.equal(sd["model." + k], v), k
    else:
        got = torch.load(w / "f32.pt")["model"]
        assert all(torch.equal(got[k], v.float() if v.is_floating_point() else v) for k, v in single.items())


@pytest.mark.parametrize("name", ["consolidate", "reshard", "convert-hf", "convert-mp2", "convert-file"])
def test_sigkill_at_random_moments(inputs, tmp_path, name):
    case = cases(inputs, tmp_path)[name]
    figures = exercise(case, KILL_POINTS, seed=zlib.crc32(name.encode()))
    print(figures.line(name))
    assert not figures.problems, figures.problems
    # Spread out: many runs die mid-write and leave temporaries, which later runs all removed.
    assert figures.points == KILL_POINTS and figures.killed >= KILL_POINTS // 4, figures.line(name)
    assert figures.leftovers_seen >= 1 and figures.leftovers_removed == figures.leftovers_seen, figures.line(name)
    check_reference(case, inputs)  # the final run's output, identical to the reference run's


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_next_run_removes_stale_temporaries_and_reports_live_ones(inputs, tmp_path):
    dead, me = _dead_pid(), os.getpid()
    stale = [f".o.pt.tmp-optforge-{dead}-1", f".o.pt.tmp-{dead}-2"]  # current and older optforge names
    reused = f".o.pt.tmp-optforge-{me}-3"   # a live PID whose process started after the file was written
    live = f".o.pt.tmp-optforge-{me}-4"     # could still be being written: left alone
    other = f".other.pt.tmp-optforge-{dead}-5"  # another output's: not this run's business
    for n in stale + [reused, live, other]:
        (tmp_path / n).write_bytes(b"partial")
    os.utime(tmp_path / reused, (1_000_000_000, 1_000_000_000))  # 2001: before this process started
    p = run_optforge("convert", inputs / "single.pt", tmp_path / "o.pt")
    for n in stale + [reused]:
        assert f"removed {tmp_path / n}, left by an interrupted run" in p.stderr
    assert f"{tmp_path / live} is the temporary of a run that may still be writing it (process {me})" in p.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([live, other, "o.pt"])


def test_folder_output_must_be_new_or_empty(inputs, tmp_path):
    sharded = inputs / "sharded"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_clean_error(run_optforge("reshard", sharded, "-o", busy, "--fsdp", 2, check=False), "not empty", "notes.txt")
    assert os.listdir(busy) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["busy"]
    empty = tmp_path / "empty"
    empty.mkdir()
    run_optforge("reshard", sharded, "-o", empty, "--fsdp", 2, "-q")
    assert sorted(os.listdir(empty)) == ["checkpoint_last-model_part-0-shard0.pt", "checkpoint_last-model_part-0-shard1.pt"]
    # A folder left by an older optforge, holding only its dead temporaries, is cleaned and reused.
    old = tmp_path / "old"
    old.mkdir()
    (old / f".checkpoint_last-model_part-0-shard0.pt.tmp-{_dead_pid()}-7").write_bytes(b"partial")
    p = run_optforge("reshard", sharded, "-o", old, "--fsdp", 1, "-q")
    assert "left by an interrupted run" in p.stderr
    assert os.listdir(old) == ["checkpoint_last-model_part-0-shard0.pt"]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A model whose f32 HF conversion takes over a second (4x SHAPE's), so that a signal sent as
    the output's temporary appears rarely comes after the run has finished."""
    path = tmp_path_factory.mktemp("hard_kill_wide") / "wide.pt"
    run_optforge("demo-model", "--shape", "350m", "--layers", 4, "--embed-dim", 1024, "--heads", 16, "--vocab", 8192,
                 "--positions", 256, "-o", path)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_folder_output_leaves_nothing(wide_model, tmp_path, sig):
    """The signal handler removes a temporary folder too, not only temporary files."""
    signal_mid_write([optforge_path(), "convert", wide_model, "-o", tmp_path / "hf", "--to", "hf", "--dtype", "f32"],
                     tmp_path, sig)
    assert os.listdir(tmp_path) == []


# ---- serve

def kill_under_load(server, prompts):
    """SIGKILLs `server` while 16 long completions are in flight; returns whether they still were."""
    pool = concurrent.futures.ThreadPoolExecutor(16)
    futures = [pool.submit(complete, server, prompts[i % len(prompts)], 400) for i in range(16)]
    time.sleep(0.5)
    in_flight = not all(f.done() for f in futures)
    server.kill()
    concurrent.futures.wait(futures, timeout=60)
    pool.shutdown()
    return in_flight


def answers(server, prompts):
    """Greedy completions of `prompts`, sent at once."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda p: complete(server, p), prompts))


PROMPTS = [f"Request number {i} says" for i in range(8)]


def serve_model(root):
    return make_tiny_model(root / "tiny.pt", embed_dim=256)


def test_serve_sigkill_under_load_then_restart_on_same_port(tmp_path):
    model = serve_model(tmp_path)
    with serve(model) as server:
        before = [complete(server, p) for p in PROMPTS]
        # Load: many concurrent long completions in flight when the kill comes.
        assert kill_under_load(server, PROMPTS), "the load finished before the kill"
    # The same port, at once (connections of the killed one linger).
    with serve(model, port=server.port) as again:
        assert again.port == server.port
        assert answers(again, PROMPTS) == before
