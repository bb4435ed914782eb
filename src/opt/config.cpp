#include "opt/config.h"

#include "opt/roles.h"
#include "util/error.h"

namespace optforge {

namespace {
struct Row {
  const char* name;
  int64_t layers, embed, heads, input;
  bool pre_ln;
};
constexpr Row kPublished[] = {
    {"125m", 12, 768, 12, 768, true},   {"350m", 24, 1024, 16, 512, false}, {"1.3b", 24, 2048, 32, 2048, true},
    {"2.7b", 32, 2560, 32, 2560, true}, {"6.7b", 32, 4096, 32, 4096, true}, {"13b", 40, 5120, 40, 5120, true},
    {"30b", 48, 7168, 56, 7168, true},  {"66b", 64, 9216, 72, 9216, true},  {"175b", 96, 12288, 96, 12288, true},
};
}  // namespace

std::optional<OptConfig> published_opt_config(const std::string& name) {
  for (const auto& r : kPublished)
    if (name == r.name) {
      OptConfig c;
      c.name = r.name;
      c.layers = r.layers;
      c.embed_dim = r.embed;
      c.ffn_dim = 4 * r.embed;
      c.heads = r.heads;
      c.input_dim = r.input;
      c.pre_ln = r.pre_ln;
      return c;
    }
  return std::nullopt;
}

std::vector<std::string> published_opt_names() {
  std::vector<std::string> v;
  for (const auto& r : kPublished) v.push_back(r.name);
  return v;
}

std::optional<std::string> published_match(const OptConfig& c) {
  for (const auto& r : kPublished) {
    const OptConfig p = *published_opt_config(r.name);
    if (p.layers == c.layers && p.embed_dim == c.embed_dim && p.ffn_dim == c.ffn_dim && p.input_dim == c.input_dim &&
        p.vocab == c.vocab && p.max_positions == c.max_positions && p.pre_ln == c.pre_ln && c.plain() &&
        (c.heads <= 0 || c.heads == p.heads))
      return p.name;
  }
  return std::nullopt;
}

int64_t OptConfig::parameter_count() const {
  int64_t n = 0;
  for (const ParamSpec& p : layout_params(*this, Layout::Metaseq)) n += int64_t(numel_of(p.shape));
  return n;
}

const char* hf_activation_name(Activation a) {
  switch (a) {
    case Activation::Relu: return "relu";
    case Activation::Gelu: return "gelu";
    case Activation::GeluTanh: return "gelu_new";
  }
  return "?";
}

const char* metaseq_activation_name(Activation a) {
  return a == Activation::GeluTanh ? "gelu_accurate" : hf_activation_name(a);
}

std::optional<Activation> activation_from_name(const std::string& s) {
  if (s == "relu") return Activation::Relu;
  if (s == "gelu") return Activation::Gelu;
  // transformers' gelu_new and metaseq's gelu_accurate (gelu_fast: its deprecated alias) are the
  // same tanh formula.
  if (s == "gelu_new" || s == "gelu_accurate" || s == "gelu_fast") return Activation::GeluTanh;
  return std::nullopt;
}

void OptConfig::validate() const {
  auto bad = [&](const std::string& m) { throw Error("invalid OPT config '" + name + "': " + m); };
  if (layers <= 0 || embed_dim <= 0 || ffn_dim <= 0 || heads <= 0 || input_dim <= 0 || vocab <= 0 || max_positions <= 0)
    bad("every dimension must be positive");
  if (embed_dim % heads)
    bad("embed_dim " + std::to_string(embed_dim) + " is not divisible by heads " + std::to_string(heads));
}

void OptConfig::validate_token_ids(const std::string& source) const {
  for (auto [field, id] : {std::pair{"pad_token_id", pad_token_id}, std::pair{"bos_token_id", bos_token_id},
                           std::pair{"eos_token_id", eos_token_id}})
    if (id < 0 || id >= vocab)
      throw Error(source + ": the config's " + field + " " + std::to_string(id) +
                  " is not a token id (the vocabulary has " + std::to_string(vocab) +
                  " tokens); the model cannot run with it");
}

}  // namespace optforge
