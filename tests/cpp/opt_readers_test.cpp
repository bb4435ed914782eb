// What read_opt_model takes from an input's config: absent keys as transformers' OPTConfig
// defaults them (num_attention_heads = 12: OPTConfig.__init__'s default, which transformers
// 4.40.2 applies to a config.json without the key), and a config beside or inside a weights
// file read and checked, never passed over.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/opt_tensors.h"
#include "formats/safetensors.h"
#include "util/error.h"

using namespace optforge;
namespace fs = std::filesystem;

namespace {

OptConfig tiny() {
  OptConfig c;
  c.name = "custom";
  c.layers = 1;
  c.embed_dim = 24;  // divisible by transformers' default 12 heads
  c.ffn_dim = 32;
  c.heads = 12;
  c.input_dim = 24;
  c.vocab = 16;
  c.max_positions = 8;
  return c;
}

// The model's tensors under HF names, zeros.
std::vector<std::pair<std::string, Tensor>> hf_zeros(const OptConfig& c) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ParamSpec& p : layout_params(c, Layout::Hf)) out.emplace_back(p.name, Tensor::empty(DType::F32, p.shape));
  return out;
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

std::string error_of(const std::string& path) {
  try {
    read_opt_model(path);
  } catch (const Error& e) { return e.what(); }
  return "";
}

// tiny()'s config.json, `edit` applied.
std::string config_json(const nlohmann::json& edit = nlohmann::json::object()) {
  nlohmann::json j = {{"model_type", "opt"},      {"hidden_size", 24},      {"ffn_dim", 32},
                      {"vocab_size", 16},         {"num_hidden_layers", 1}, {"max_position_embeddings", 8},
                      {"word_embed_proj_dim", 24}};
  j.update(edit);
  return j.dump();
}

}  // namespace

TEST(OptReaders, AbsentHeadCountIsTransformersDefault) {
  const fs::path dir = fs::temp_directory_path() / "optforge_readers_default_heads";
  fs::remove_all(dir);
  fs::create_directories(dir);
  save_safetensors((dir / "model.safetensors").string(), hf_zeros(tiny()));
  write(dir / "config.json", config_json());
  ReadModelOptions o;
  o.heads_may_be_unknown = true;  // inspect: still the count transformers would use
  const OptTensors m = read_opt_model(dir.string(), o);
  EXPECT_EQ(m.config.heads, 12);
  EXPECT_TRUE(m.heads_known);
  fs::remove_all(dir);
}

TEST(OptReaders, ASiblingConfigIsReadAndChecked) {
  const fs::path dir = fs::temp_directory_path() / "optforge_readers_sibling";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string weights = (dir / "w.safetensors").string();
  save_safetensors(weights, hf_zeros(tiny()));
  write(dir / "config.json", config_json({{"num_attention_heads", 6}}));
  EXPECT_EQ(read_opt_model(weights).config.heads, 6);
  write(dir / "config.json", "{not json");
  std::string err = error_of(weights);
  EXPECT_NE(err.find("config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;
  write(dir / "config.json", R"({"model_type": "gpt2"})");
  err = error_of(weights);
  EXPECT_NE(err.find("model_type is \"gpt2\""), std::string::npos) << err;
  write(dir / "config.json", config_json({{"hidden_size", 48}}));
  err = error_of(weights);
  EXPECT_NE(err.find("hidden_size = 48"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(OptReaders, OwnMetadataConfigIsChecked) {
  const fs::path dir = fs::temp_directory_path() / "optforge_readers_metadata";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string weights = (dir / "w.safetensors").string();
  save_safetensors(weights, hf_zeros(tiny()), {{"format", "pt"}, {"opt_config", config_json({{"ffn_dim", 64}})}});
  const std::string err = error_of(weights);
  EXPECT_NE(err.find("ffn_dim = 64"), std::string::npos) << err;
  EXPECT_NE(err.find("__metadata__ opt_config"), std::string::npos) << err;
  fs::remove_all(dir);
}
