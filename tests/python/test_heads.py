"""The attention head count is never guessed. A checkpoint that does not record it (an alpa
numpy folder, a state dict without config.json) and whose shape is not a published OPT model's
runs with --heads on every command, and without it every command refuses with the same error.
Reference: a random 4-head, hidden-64 OPT model made by transformers; with 4 heads of 16 the
64-wide-head guess (1 head) gave wrong logprobs."""
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import OPTConfig, OPTForCausalLM

from conftest import assert_clean_error, run_optforge
from serve_util import complete, serve
from tokenizer_reference import opt_slow_tokenizer

HEADS = 4


@pytest.fixture(scope="module")
def alpa_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, ffn_dim=256, num_attention_heads=HEADS,
                    max_position_embeddings=40, word_embed_proj_dim=64, do_layer_norm_before=True,
                    pad_token_id=1, bos_token_id=2, eos_token_id=2)
    model = OPTForCausalLM(cfg).eval()
    with torch.no_grad():  # random biases and norms too: every weight matters
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(root / "hf", safe_serialization=True)
    run_optforge("convert", root / "hf", "-o", root / "alpa", "--to", "alpa")
    return model, root


def hf_sum_logprob(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return float(sum(lp[i - 1, ids[i]] for i in range(1, len(ids))))


IDS = [2, 17, 40, 5, 91, 33, 8, 60, 12, 77, 3, 50]


def refusal(proc):
    """The refusal's reason, without the file it names (which differs between commands)."""
    line = assert_clean_error(proc, "cannot tell the number of attention heads", "pass --heads")
    return line.split(": cannot tell", 1)[1].strip()


def test_score_with_heads_equals_transformers(alpa_model, tmp_path, optforge_bin):
    model, root = alpa_model
    (tmp_path / "ids.jsonl").write_text(json.dumps(IDS) + "\n")
    out = run_optforge("score", root / "alpa", tmp_path / "ids.jsonl", "--ids", "--json", "--heads", HEADS).stdout
    ours = json.loads(out)["sum_logprob"]
    want = hf_sum_logprob(model, IDS)
    assert abs(ours - want) < 1e-3, (ours, want)
    # The old guess (64-wide heads: 1 head here) is measurably wrong on this model.
    wrong = json.loads(run_optforge("score", root / "alpa", tmp_path / "ids.jsonl", "--ids", "--json",
                                    "--heads", 1).stdout)["sum_logprob"]
    assert abs(wrong - want) > 1e-2


def test_every_command_refuses_without_heads_the_same_way(alpa_model, tmp_path, optforge_bin):
    _, root = alpa_model
    alpa = root / "alpa"
    (tmp_path / "ids.jsonl").write_text(json.dumps(IDS) + "\n")
    messages = {
        "score": refusal(run_optforge("score", alpa, tmp_path / "ids.jsonl", "--ids", check=False)),
        "generate": refusal(run_optforge("generate", alpa, "--prompt-ids", "2,17", "--max-tokens", 1, check=False)),
        "convert": refusal(run_optforge("convert", alpa, "-o", tmp_path / "m.pt", "--to", "metaseq", check=False)),
        "serve": refusal(run_optforge("serve", alpa, "--port", 0, check=False, timeout=60)),
    }
    assert len(set(messages.values())) == 1, messages
    assert not (tmp_path / "m.pt").exists()
    # A state dict without a config.json beside it is the same case (written by safetensors
    # itself: optforge's own safetensors output records its config in the header).
    model, _ = alpa_model
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
              str(tmp_path / "m.safetensors"))
    assert refusal(run_optforge("score", tmp_path / "m.safetensors", tmp_path / "ids.jsonl", "--ids", check=False))
    # inspect shows the folder, and says the count is unknown instead of inventing one.
    out = run_optforge("inspect", alpa).stdout
    assert "? heads (not recorded" in out


def test_generate_and_serve_run_with_heads(alpa_model, optforge_bin):
    model, root = alpa_model
    g = json.loads(run_optforge("generate", root / "alpa", "--prompt-ids", "2,17,40", "--max-tokens", 3,
                                "--temperature", 0, "--ignore-eos", "--json", "--heads", HEADS).stdout)
    with torch.no_grad():
        want = model.generate(torch.tensor([[2, 17, 40]]), max_new_tokens=3, do_sample=False,
                              min_new_tokens=3)[0, 3:].tolist()
    assert g["choices"][0]["ids"] == want
    # The server's greedy completion (12 tokens) as text: transformers' ids, decoded by transformers'
    # GPT-2 tokenizer (the server uses the same built-in OPT vocabulary).
    with torch.no_grad():
        want = model.generate(torch.tensor([[2, 17, 40]]), max_new_tokens=12, do_sample=False,
                              min_new_tokens=12)[0, 3:].tolist()
    with serve(root / "alpa", "--heads", HEADS) as s:
        text = complete(s, [2, 17, 40], 12, ignore_eos=True)
    assert text == opt_slow_tokenizer().decode(want, clean_up_tokenization_spaces=False)
