"""What a first-time user found by trying the toolkit, each kept as a test with the right answer:
an output never replaces an input (whatever command, path spelling or symlink); --heads is a
positive count that agrees with a recorded one; the server stops where `generate` stops (the
config's eos_token_id); errors name the reason that applies. References: the input bytes
(sha256), transformers' own generation with the config's eos_token_id, and `tokenizers`."""
import json
import os
import shutil

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from conftest import assert_clean_error, assert_usage_error, run_optforge, sha256_file
from serve_util import call, serve


def refused(*args, **kw):
    """The error line of a command that must be refused cleanly."""
    return assert_clean_error(run_optforge(*args, check=False, **kw))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    torch.manual_seed(3)
    cfg = OPTConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    max_position_embeddings=64, word_embed_proj_dim=32, init_std=0.2)
    m = OPTForCausalLM(cfg).eval()
    m.save_pretrained(root / "hf", safe_serialization=True)
    return m, root


@pytest.mark.parametrize("form", ["same", "dot", "symlink"])
def test_file_convert_never_replaces_its_input(model, tmp_path, form):
    _, root = model
    src = tmp_path / "x.safetensors"
    src.write_bytes((root / "hf" / "model.safetensors").read_bytes())
    before = sha256_file(src)
    out = {"same": src, "dot": tmp_path / "." / "x.safetensors", "symlink": tmp_path / "link.safetensors"}[form]
    if form == "symlink":
        os.symlink(src, out)
    err = refused("convert", src, out, "--dtype", "f16")
    assert "would replace an input" in err
    assert sha256_file(src) == before
    assert form != "symlink" or os.path.islink(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({src.name, out.name})  # no temporary left


def test_model_convert_never_replaces_its_input(model, tmp_path):
    _, root = model
    run_optforge("convert", root / "hf", "-o", tmp_path / "m.pt", "--to", "metaseq")
    before = sha256_file(tmp_path / "m.pt")
    assert "would replace an input" in refused("convert", tmp_path / "m.pt", "-o", tmp_path / "m.pt", "--to",
                                               "metaseq", "--dtype", "f16")
    assert sha256_file(tmp_path / "m.pt") == before


def test_heads_must_be_positive_and_agree_with_the_config(model, tmp_path):
    _, root = model
    # A value that is not a positive count never reaches optforge: the argument parser (CLI11)
    # refuses it with its own usage error naming --heads (see assert_usage_error).
    for bad in ["-1", "0"]:
        assert_usage_error(run_optforge("generate", root / "hf", "--prompt-ids", "2,5", "--heads", bad, check=False),
                           "--heads")
    assert "disagrees" in refused("generate", root / "hf", "--prompt-ids", "2,5,7", "--heads", "8")
    run_optforge("generate", root / "hf", "--prompt-ids", "2,5", "--heads", "4", "--max-tokens", "1")  # agrees


def test_server_stops_at_the_config_eos_like_generate(model, tmp_path):
    m, root = model
    prompt = [2, 17, 40, 5]
    with torch.no_grad():
        free = m.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                          pad_token_id=1)[0, len(prompt):].tolist()
    # The first greedy token not seen before becomes eos: generation must stop just before it.
    stop = next(i for i in range(1, len(free)) if free[i] not in free[:i])
    eos = free[stop]
    d = tmp_path / "hf_eos"
    shutil.copytree(root / "hf", d)
    for name in ["config.json", "generation_config.json"]:
        cfg = json.loads((d / name).read_text())
        cfg["eos_token_id"] = eos
        (d / name).write_text(json.dumps(cfg))
    want = free[:stop]
    ours = json.loads(run_optforge("generate", d, "--prompt-ids", ",".join(map(str, prompt)), "--max-tokens", 12,
                                   "--temperature", 0, "--json").stdout)["choices"][0]
    assert ours["ids"] == want and ours["finish_reason"] == "stop"
    with serve(d) as server:
        status, body = call("POST", server.url + "/v1/completions",
                            {"model": "hf_eos", "prompt": prompt, "max_tokens": 12, "temperature": 0})
        assert status == 200, body
        choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == ours["text"]


def test_a_final_norm_the_config_rules_out_is_named_as_such(model, tmp_path):
    _, root = model
    d = tmp_path / "postln"
    shutil.copytree(root / "hf", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["do_layer_norm_before"] = False  # the weights still hold the final layer norm
    (d / "config.json").write_text(json.dumps(cfg))
    err = refused("generate", d, "--prompt-ids", "2,5")
    assert "final_layer_norm" in err and "no final layer norm" in err and "affine" not in err, err


def test_tokenizer_json_added_token_on_a_vocabulary_id_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["hello world, a small corpus for a small vocabulary"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    d = tmp_path / "tok"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    j = json.loads((d / "tokenizer.json").read_text())
    taken = next(i for t, i in j["model"]["vocab"].items() if i > 10)
    j["added_tokens"].append({"id": taken, "content": "<extra>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True})
    (d / "tokenizer.json").write_text(json.dumps(j))
    err = refused("tokenize", "--tokenizer", d, input="hi\n")
    assert "<extra>" in err and str(taken) in err


@pytest.mark.parametrize("field", ["eos_token_id", "bos_token_id", "pad_token_id"])
def test_special_ids_outside_the_vocabulary_stop_running_not_converting(model, tmp_path, field):
    """transformers loads a config whose eos_token_id is past the vocabulary and then never stops
    at it; optforge refuses to run such a model (naming the folder and the field) and still
    converts it, carrying the value through as transformers' save_pretrained does."""
    _, root = model
    shutil.copytree(root / "hf", tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg[field] = 300  # vocab_size is 300: ids are 0..299
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "ids.jsonl").write_text("[2, 5, 7]\n")
    for cmd in (["generate", "--prompt-ids", "2,5", "--max-tokens", "1"], ["score", tmp_path / "ids.jsonl", "--ids"]):
        err = refused(cmd[0], tmp_path / "hf", *cmd[1:])
        assert str(tmp_path / "hf") in err and f"{field} 300 is not a token id" in err and "300 tokens" in err
    run_optforge("convert", tmp_path / "hf", "--to", "hf", "-o", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())[field] == 300
    assert OPTConfig.from_pretrained(tmp_path / "out").to_dict()[field] == 300


def test_kv_cache_pool_size_is_checked(model):
    """--kv-cache-tokens 0 or below was replaced by the default without a word; a pool larger
    than the machine can reserve failed with a bare std::bad_alloc."""
    _, root = model
    for bad in ["0", "-5"]:
        line = assert_usage_error(run_optforge("serve", root / "hf", "--kv-cache-tokens", bad, check=False),
                                  "--kv-cache-tokens")
        assert "not in range 1 to" in line
    if os.environ.get("OPTFORGE_SANITIZED") == "1":
        return  # ASan's allocator aborts on an allocation this size instead of throwing std::bad_alloc
    # 2e9 tokens x 2 layers x (K and V) x 32 values x 4 bytes: 1 TB, beyond any machine's memory.
    err = refused("serve", root / "hf", "--port", "0", "--kv-cache-tokens", "2000000000", "--kv-dtype", "f32")
    assert "could not reserve memory for a KV cache pool of --kv-cache-tokens 2000000000" in err


def test_max_tokens_limit_below_the_default_of_16(model):
    """With --max-tokens-limit under OpenAI's default max_tokens of 16, a completion that names no
    max_tokens gets the limit; one that asks for more than the limit is refused."""
    _, root = model
    with serve(root / "hf", "--max-tokens-limit", 10) as s:
        status, body = call("POST", s.url + "/v1/completions",
                            {"model": s.model_id, "prompt": [2, 5], "ignore_eos": True, "temperature": 0})
        assert status == 200 and body["usage"]["completion_tokens"] == 10, body
        status, body = call("POST", s.url + "/v1/completions",
                            {"model": s.model_id, "prompt": [2, 5], "max_tokens": 11})
        assert status == 400 and body["error"]["param"] == "max_tokens", body
