"""Inputs the fuzzers (tests/fuzz) found crashing a reader, as the CLI sees them: each must now be
one clear error line naming the file and what was expected. The files are real ones written by
numpy and transformers, then broken the way the fuzzer broke them."""
import io
import json
import shutil
import struct
import zipfile

import numpy as np
import pytest
import transformers
from safetensors.numpy import save

from conftest import assert_clean_error, run_optforge


def inspect(path):
    return run_optforge("inspect", path, check=False, errors="replace", timeout=120)


def test_npz_member_whose_fortran_strides_overflow(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3), dtype=np.float32, order="F"))
    member = buf.getvalue().replace(b"(2, 3)", b"(159744, 77777777777777, 7)", 1)
    p = tmp_path / "huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.npy", member)
    assert_clean_error(inspect(p), p, "too large")


def test_empty_safetensors_tensor_whose_other_sizes_overflow_its_strides(tmp_path):
    # Zero elements, so the data_offsets check passes; the strides (zero sizes counted as 1, as
    # torch counts them) would be 2^80.
    data = save({"w": np.zeros((0, 2, 3), dtype=np.float32)})
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["w"]["shape"] = [0, 2**40, 2**40]
    h = json.dumps(header).encode()
    p = tmp_path / "huge.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h + data[8 + n:])
    assert_clean_error(inspect(p), p, "tensor 'w'", "too large")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    cfg = transformers.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                                 max_position_embeddings=16, word_embed_proj_dim=16)
    d = tmp_path_factory.mktemp("hf") / "sharded"
    transformers.OPTForCausalLM(cfg).save_pretrained(d, safe_serialization=True, max_shard_size="6KB")
    assert (d / "model.safetensors.index.json").exists()
    return d


def broken_copy(hf_folder, tmp_path, name, edit):
    d = tmp_path / "hf"
    shutil.copytree(hf_folder, d)
    text = (d / name).read_text()
    (d / name).write_text(edit(text) if callable(edit) else edit)
    return d


def first_file(index_text, change):
    """The index with its first weight_map entry's file name changed."""
    index = json.loads(index_text)
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = change(index["weight_map"][first])
    return json.dumps(index)


@pytest.mark.parametrize("edit, mention", [
    (lambda t: t.replace('"weight_map": {', '"weight_map": {,', 1), "not valid JSON"),   # the fuzzer's first find
    ('{"weight_map": ["model.safetensors"]}', "weight_map"),
    (lambda t: first_file(t, lambda f: 7), "expected a file name"),
    (lambda t: first_file(t, lambda f: "../" + f), "expected the name of a file in this folder"),
    (lambda t: first_file(t, lambda f: "/etc/hostname"), "expected the name of a file in this folder"),
    ("[]", "expected a JSON object"),
])
def test_broken_index(hf_folder, tmp_path, edit, mention):
    d = broken_copy(hf_folder, tmp_path, "model.safetensors.index.json", edit)
    assert_clean_error(inspect(d), "model.safetensors.index.json", mention)


def test_index_names_a_file_name_too_long(hf_folder, tmp_path):
    d = broken_copy(hf_folder, tmp_path, "model.safetensors.index.json", lambda t: first_file(t, lambda f: "x" * 300 + f))
    assert_clean_error(inspect(d), "x" * 300, "cannot access the weights file the index names")


@pytest.mark.parametrize("key, value, mention", [
    ("model_type", 5, "model_type is 5"),
    ("num_attention_heads", "2", "num_attention_heads"),
    ("num_attention_heads", 0, "num_attention_heads"),
    ("do_layer_norm_before", "yes", "do_layer_norm_before"),
])
def test_config_field_of_the_wrong_type(hf_folder, tmp_path, key, value, mention):
    def edit(text):
        cfg = json.loads(text)
        cfg[key] = value
        return json.dumps(cfg)
    d = broken_copy(hf_folder, tmp_path, "config.json", edit)
    assert_clean_error(inspect(d), "config.json", mention)


def test_the_unbroken_folder_loads(hf_folder):
    proc = inspect(hf_folder)
    assert proc.returncode == 0 and "Hugging Face folder" in proc.stdout, proc.stderr
