// The role table (opt/roles.h) and what is derived from it: names round-trip in every layout,
// shapes follow the config, and a model is named/headed by one published-shape match.
// References: tensor names as transformers' OPTForCausalLM and metaseq's restored.pt spell them,
// and OPT-125m's published parameter count (transformers' num_parameters(): 125,239,296).
#include <gtest/gtest.h>

#include "checkpoint/layout.h"
#include "convert/opt_tensors.h"
#include "opt/config.h"
#include "opt/roles.h"
#include "util/error.h"

using namespace optforge;

namespace {

constexpr Layout kLayouts[] = {Layout::Metaseq, Layout::MetaseqFused, Layout::Hf, Layout::AlpaFile, Layout::AlpaTree};

OptConfig small_config() {
  OptConfig c;
  c.name = "custom";
  c.layers = 3;
  c.embed_dim = 16;
  c.ffn_dim = 40;
  c.heads = 4;
  c.input_dim = 8;  // with projections
  c.vocab = 24;
  c.max_positions = 10;
  c.pre_ln = false;
  return c;
}

// Tensors of `c`'s shapes whose bytes are never read (zeros if they were).
std::vector<std::pair<std::string, Tensor>> lazy_model(const OptConfig& c) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ParamSpec& p : layout_params(c, Layout::Metaseq)) {
    auto s = std::make_shared<Storage>();
    s->dtype = DType::F16;
    s->nbytes = uint64_t(numel_of(p.shape)) * 2;
    s->generate = [](uint64_t, uint8_t* dst, size_t n) { std::fill(dst, dst + n, uint8_t(0)); };
    out.emplace_back(p.name, Tensor::view_of(s, p.shape));
  }
  return out;
}

}  // namespace

TEST(Roles, EveryNameRoundTripsInEveryLayout) {
  for (Layout l : kLayouts)
    for (size_t i = 0; i < kRoleCount; ++i) {
      const RoleSpec& r = role_spec(Role(i));
      for (int64_t layer : {0, 7, 123}) {
        const std::string name = role_name(r, l, layer);
        if (name.empty()) continue;  // the layout has no such tensor
        auto ref = parse_role_name(l, name);
        ASSERT_TRUE(ref) << name;
        EXPECT_EQ(ref->role, r.role) << name;
        EXPECT_EQ(ref->layer, r.scope == Scope::Layer ? layer : -1) << name;
        if (r.scope == Scope::Layer) { EXPECT_EQ(layer_of(l, name), layer) << name; }
      }
    }
}

TEST(Roles, NamesAreThoseOfTransformersAndMetaseq) {
  EXPECT_EQ(role_name(role_spec(Role::QWeight), Layout::Hf, 3), "model.decoder.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(role_name(role_spec(Role::FinalNormBias), Layout::Hf), "model.decoder.final_layer_norm.bias");
  EXPECT_EQ(role_name(role_spec(Role::LmHead), Layout::Hf), "lm_head.weight");
  EXPECT_EQ(role_name(role_spec(Role::ProjectIn), Layout::Metaseq), "decoder.project_in_dim.weight");
  EXPECT_EQ(role_name(role_spec(Role::QkvWeight), Layout::MetaseqFused, 11),
            "decoder.layers.11.self_attn.qkv_proj.weight");
  EXPECT_EQ(role_name(role_spec(Role::FfnNormWeight), Layout::Metaseq, 0), "decoder.layers.0.final_layer_norm.weight");
  // Spellings parse_any_role_name accepts: HF with and without "model.", metaseq, alpa files.
  EXPECT_EQ(parse_any_role_name("decoder.layers.2.fc1.bias")->role, Role::Fc1Bias);
  EXPECT_EQ(parse_any_role_name("model.decoder.project_out.weight")->role, Role::ProjectOut);
  EXPECT_EQ(parse_any_role_name("decoder.project_out.weight")->role, Role::ProjectOut);
  EXPECT_EQ(parse_any_role_name("decoder.project_out_dim.weight")->role, Role::ProjectOut);
  EXPECT_FALSE(parse_any_role_name("decoder.layers.2.fc3.weight"));
  EXPECT_FALSE(parse_role_name(Layout::Hf, "model.decoder.layers.x.fc1.weight"));
}

TEST(Roles, ShapesFollowTheConfig) {
  const OptConfig c = small_config();
  for (Layout l : kLayouts)
    for (const ParamSpec& p : layout_params(c, l)) {
      auto ref = parse_role_name(l, p.name);
      ASSERT_TRUE(ref) << p.name;
      EXPECT_EQ(ref->role, p.ref.role);
      EXPECT_EQ(p.shape, role_shape(role_spec(p.ref.role), c));
      EXPECT_TRUE(role_stored(role_spec(p.ref.role), c, l));
    }
  auto shape = [&](Role r, int64_t parts = 1) { return role_shape(role_spec(r), c, parts); };
  EXPECT_EQ(shape(Role::TokenEmbed), (Shape{24, 8}));
  EXPECT_EQ(shape(Role::Positions), (Shape{12, 16}));
  EXPECT_EQ(shape(Role::ProjectIn), (Shape{16, 8}));
  EXPECT_EQ(shape(Role::Fc1Weight), (Shape{40, 16}));
  EXPECT_EQ(shape(Role::Fc2Weight, 2), (Shape{16, 20}));  // row-parallel: input columns split
  EXPECT_EQ(shape(Role::QkvWeight, 2), (Shape{24, 16}));  // 3 blocks of E/2 rows
  EXPECT_EQ(shape(Role::TokenEmbed, 4), (Shape{6, 8}));   // vocab-parallel
  // post-LN: no final layer norm, said so by the one rule that says why
  EXPECT_STREQ(unmet_need(role_spec(Role::FinalNormWeight), c),
               "the config has no final layer norm (post-LN, or _remove_final_layer_norm)");
  EXPECT_EQ(unmet_need(role_spec(Role::ProjectIn), c), nullptr);
  // layout_params lists model roles before and after the layers as restored.pt does
  const auto ps = layout_params(c, Layout::Metaseq);
  EXPECT_EQ(ps.front().name, "decoder.embed_tokens.weight");
  EXPECT_EQ(ps.back().name, "decoder.project_out_dim.weight");
  EXPECT_EQ(role_place(Role::Positions), Place::BeforeLayers);
  EXPECT_EQ(role_place(Role::FinalNormWeight), Place::AfterLayers);
  EXPECT_EQ(role_place(Role::Fc1Bias), Place::InLayer);
}

TEST(Roles, Opt125mParameterCountIsThePublishedOne) {
  EXPECT_EQ(published_opt_config("125m")->parameter_count(), 125239296);
}

TEST(Roles, PublishedMatchComparesEveryDimension) {
  OptConfig c = *published_opt_config("125m");
  EXPECT_EQ(published_match(c), "125m");
  c.heads = 0;  // unknown: the shape alone names it
  EXPECT_EQ(published_match(c), "125m");
  c.heads = 6;
  EXPECT_FALSE(published_match(c));
  c.heads = 12;
  c.ffn_dim = 1024;  // 125m's L/E/H with another F is not OPT-125m
  EXPECT_FALSE(published_match(c));
  c.ffn_dim = 3072;
  c.enable_bias = false;
  EXPECT_FALSE(published_match(c));
}

TEST(Roles, A125mLookalikeWithAnotherFfnIsCustom) {
  OptConfig c = *published_opt_config("125m");
  c.ffn_dim = 1024;
  SourceConfig sc;
  sc.heads = 12;
  OptTensors m = opt_model_from_named(lazy_model(c), sc, "lookalike");
  EXPECT_EQ(m.config.name, "custom");
  EXPECT_EQ(m.config.heads, 12);
  // without a stated head count nothing tells it: refused, or unknown when allowed
  EXPECT_THROW(opt_model_from_named(lazy_model(c), {}, "lookalike"), Error);
  EXPECT_FALSE(opt_model_from_named(lazy_model(c), {}, "lookalike", true).heads_known);
  // the real shape: named and headed by the published model
  OptTensors real = opt_model_from_named(lazy_model(*published_opt_config("125m")), {}, "real");
  EXPECT_EQ(real.config.name, "125m");
  EXPECT_EQ(real.config.heads, 12);
  EXPECT_TRUE(real.heads_known);
}

TEST(Roles, StatedSizesMustAgreeWithTheTensors) {
  const OptConfig c = small_config();
  SourceConfig sc;
  sc.heads = 4;
  sc.file = "config.json";
  sc.ffn_dim = 41;
  try {
    opt_model_from_named(lazy_model(c), sc, "weights.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ffn_dim = 41"), std::string::npos) << what;
    EXPECT_NE(what.find("config.json"), std::string::npos) << what;
  }
}

TEST(Roles, SurgeryReadsACfgWhateverItsActivation) {
  auto model = Value::dict();
  for (auto [k, v] : {std::pair<const char*, int64_t>{"decoder_layers", 2},
                      {"decoder_embed_dim", 16},
                      {"decoder_attention_heads", 4},
                      {"max_target_positions", 10}})
    model->set(k, Value::integer(v));
  model->set("activation_fn", Value::str("swiglu"));
  auto root = Value::dict();
  root->set("args", model);  // very old files: a flat args Namespace at the top level
  const ckpt::MetaseqCfg d = ckpt::dims_from_cfg(root, "old.pt");
  EXPECT_EQ(d.config.heads, 4);
  EXPECT_EQ(ckpt::read_cfg_fields(root)->activation_fn, "swiglu");
  EXPECT_THROW(ckpt::dims_from_cfg(Value::dict(), "none.pt"), Error);
}
