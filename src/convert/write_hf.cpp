#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "checkpoint/layout.h"
#include "convert/model_writers.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"
#include "io/atomic_dir.h"
#include "io/atomic_file.h"
#include "io/mmap_file.h"
#include "tensor/quantize.h"
#include "tensor/quantize_int4.h"
#include "tensor/views.h"
#include "tokenizer/embedded_data.h"
#include "util/error.h"

namespace optforge {

using ojson = nlohmann::ordered_json;

namespace {

void write_text(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text);
  f.commit();
}

ojson hf_config(const OptTensors& m) {
  const OptConfig& c = m.config;
  const auto cfg = ckpt::read_cfg_fields(m.metaseq_root);  // a metaseq input's dropout rates
  // Field set and order as transformers' OPTConfig.save_pretrained writes them.
  return ojson{
      {"_remove_final_layer_norm", c.remove_final_norm},
      {"activation_dropout", 0.0},
      {"activation_function", hf_activation_name(c.activation)},
      {"architectures", {"OPTForCausalLM"}},
      {"attention_dropout", cfg && cfg->attention_dropout ? *cfg->attention_dropout : 0.0},
      {"bos_token_id", c.bos_token_id},
      {"do_layer_norm_before", c.pre_ln},
      {"dropout", cfg && cfg->dropout ? *cfg->dropout : 0.1},
      {"enable_bias", c.enable_bias},
      {"eos_token_id", c.eos_token_id},
      {"ffn_dim", c.ffn_dim},
      {"hidden_size", c.embed_dim},
      {"init_std", 0.02},
      {"layer_norm_elementwise_affine", c.ln_affine},
      {"layerdrop", 0.0},
      {"max_position_embeddings", c.max_positions},
      {"model_type", "opt"},
      {"num_attention_heads", c.heads},
      {"num_hidden_layers", c.layers},
      {"pad_token_id", c.pad_token_id},
      {"prefix", "</s>"},
      {"torch_dtype", std::string(torch_dtype_name(m.dtype()))},
      {"transformers_version", "4.40.2"},
      {"use_cache", true},
      {"vocab_size", c.vocab},
      {"word_embed_proj_dim", c.input_dim},
  };
}

void write_tokenizer(const AtomicDir& dir, const std::string& from) {
  if (from.empty()) {
    auto files = embedded_tokenizer_files();
    write_text(dir.path("vocab.json"), std::string(files.vocab_json));
    write_text(dir.path("merges.txt"), std::string(files.merges_txt));
  } else {
    for (const char* f : {"vocab.json", "merges.txt"}) {
      std::string p = from + "/" + f;
      if (!std::filesystem::exists(p)) throw Error("tokenizer folder has no " + std::string(f), from);
      write_text(dir.path(f), read_text_file(p));
    }
  }
  // What facebook/opt-* ship: GPT2Tokenizer with </s> prepended as BOS.
  write_text(dir.path("tokenizer_config.json"), ojson{{"add_bos_token", true},
                                                      {"add_prefix_space", false},
                                                      {"bos_token", "</s>"},
                                                      {"eos_token", "</s>"},
                                                      {"errors", "replace"},
                                                      {"model_max_length", 1000000000000000019ull},
                                                      {"pad_token", "<pad>"},
                                                      {"tokenizer_class", "GPT2Tokenizer"},
                                                      {"unk_token", "</s>"}}
                                                        .dump(2) +
                                                    "\n");
  write_text(
      dir.path("special_tokens_map.json"),
      ojson{{"bos_token", "</s>"}, {"eos_token", "</s>"}, {"pad_token", "<pad>"}, {"unk_token", "</s>"}}.dump(2) +
          "\n");
}

// The tensors as stored under HF names: each int8 matrix followed by its "<name>_scale".
std::vector<std::pair<std::string, Tensor>> hf_named(const OptTensors& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    out.emplace_back(m.name_in(i, Layout::Hf), m.tensors[i].second);
    if (auto it = m.scales.find(i); it != m.scales.end())
      out.emplace_back(out.back().first + std::string(kScaleSuffix), it->second);
  }
  return out;
}

// safetensors' __metadata__: the format, and the quantization scheme when there is one.
std::vector<std::pair<std::string, std::string>> st_metadata(const OptTensors& m) {
  std::vector<std::pair<std::string, std::string>> md{{"format", "pt"}};
  if (!m.scales.empty())
    md.emplace_back(kQuantizationKey, m.dtype_of_quantized() == DType::U8 ? kInt4Scheme : kInt8Scheme);
  return md;
}

}  // namespace

uint64_t parse_size(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) throw Error("bad size '" + s + "': expected e.g. 5GB, 500MB, 2GiB");
  double v = std::stod(s.substr(0, i));
  std::string u = s.substr(i);
  for (auto& ch : u) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double mult = u.empty() || u == "B" ? 1
                : u == "KB"           ? 1e3
                : u == "MB"           ? 1e6
                : u == "GB"           ? 1e9
                : u == "TB"           ? 1e12
                : u == "KIB"          ? 1024.0
                : u == "MIB"          ? 1048576.0
                : u == "GIB"          ? 1073741824.0
                : u == "TIB"          ? 1099511627776.0
                                      : -1;
  if (mult < 0) throw Error("bad size unit in '" + s + "'");
  return uint64_t(v * mult);
}

void write_hf(const OptTensors& m, const std::string& outdir, const HfWriteOptions& o) {
  AtomicDir dir(outdir);
  write_text(dir.path("config.json"), hf_config(m).dump(2) + "\n");
  write_text(dir.path("generation_config.json"), ojson{{"_from_model_config", true},
                                                       {"bos_token_id", m.config.bos_token_id},
                                                       {"eos_token_id", m.config.eos_token_id},
                                                       {"pad_token_id", m.config.pad_token_id},
                                                       {"transformers_version", "4.40.2"}}
                                                         .dump(2) +
                                                     "\n");
  write_tokenizer(dir, o.tokenizer_dir);

  // Shards as HF cuts them: tensors in order, a new shard when the next would pass the limit.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const auto& [name, t] : hf_named(m)) {
    if (in_shard > 0 && in_shard + t.nbytes() > o.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().emplace_back(name, compact(t));
    in_shard += t.nbytes();
    total += t.nbytes();
  }
  const std::string stem = o.safetensors ? "model" : "pytorch_model", ext = o.safetensors ? ".safetensors" : ".bin";
  ojson weight_map = ojson::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string file = stem + ext;
    if (shards.size() > 1) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", i + 1, shards.size());
      file = stem + buf + ext;
    }
    if (o.safetensors) {
      save_safetensors(dir.path(file), shards[i], st_metadata(m));
    } else {
      auto sd = Value::dict(true);
      for (const auto& [n, t] : shards[i]) sd->entries.emplace_back(Value::str(n), Value::of_tensor(t));
      save_torch_file(dir.path(file), sd);
    }
    for (const auto& [n, t] : shards[i]) weight_map[n] = file;
  }
  if (shards.size() > 1)
    write_text(dir.path(stem + ext + ".index.json"),
               ojson{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n");
  dir.commit();
}

void write_safetensors_state(const OptTensors& m, const std::string& outfile) {
  // A bare state dict has no config.json: the model's config travels in the header's metadata
  // (strings only), so that activation, LN switches and token ids survive a round trip.
  auto md = st_metadata(m);
  md.emplace_back("opt_config", hf_config(m).dump());
  save_safetensors(outfile, hf_named(m), md);
}

}  // namespace optforge
