// Properties of the forward pass that hold whatever the reference: the KV cache path equals the
// one-shot path, a ragged batch equals its sequences run alone, positions follow the mask.
// (Agreement with transformers is checked by tests/python/test_model.py.)
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/torch_file.h"
#include "model/generate.h"
#include "model/runtime.h"
#include "opt/random_model.h"
#include "util/error.h"

using namespace optforge;

namespace {

std::string tiny_model(bool post_ln) {
  OptConfig c = *published_opt_config(post_ln ? "350m" : "125m");
  c.layers = 2;
  c.embed_dim = 40;
  c.ffn_dim = 72;
  c.heads = 4;
  c.input_dim = post_ln ? 24 : 40;
  c.vocab = 301;
  c.max_positions = 64;
  const auto path = std::filesystem::temp_directory_path() /
                    (std::string("optforge_model_test_") + (post_ln ? "post" : "pre") + ".pt");
  save_torch_file(path.string(), random_opt_checkpoint(c, DType::F16, 3));
  return path.string();
}

float max_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

class Forward : public ::testing::TestWithParam<bool> {};

TEST_P(Forward, IncrementalEqualsOneShotAndBatchEqualsAlone) {
  auto rt = open_model(tiny_model(GetParam()));
  OptModel& m = *rt->model;
  const size_t V = size_t(m.config().vocab);
  const std::vector<int32_t> a = {2, 17, 5, 300, 9, 9, 44, 120}, b = {2, 8, 250};

  KvCache one = m.make_cache(1, 16);
  const auto full = m.forward(one, {{0, a, {}}}, OptModel::Logits::All);

  KvCache inc = m.make_cache(1, 16);
  std::vector<float> steps = m.forward(inc, {{0, {a.begin(), a.begin() + 3}, {}}}, OptModel::Logits::All);
  for (size_t i = 3; i < a.size(); ++i) {
    auto l = m.forward(inc, {{0, {a[i]}, {}}});
    steps.insert(steps.end(), l.begin(), l.end());
  }
  ASSERT_EQ(steps.size(), full.size());
  EXPECT_LT(max_diff(steps.data(), full.data(), full.size()), 1e-4f);

  KvCache alone = m.make_cache(1, 16);
  const auto lb = m.forward(alone, {{0, b, {}}});
  KvCache both = m.make_cache(2, 16);
  const auto lab = m.forward(both, {{0, a, {}}, {1, b, {}}});  // ragged: 8 and 3 tokens
  EXPECT_LT(max_diff(lab.data(), full.data() + (a.size() - 1) * V, V), 1e-4f);
  EXPECT_LT(max_diff(lab.data() + V, lb.data(), V), 1e-4f);

  // Left padding with a mask changes nothing for the real tokens.
  KvCache padded = m.make_cache(1, 16);
  std::vector<int32_t> pb = {1, 1, 1, 2, 8, 250};
  const auto lp = m.forward(padded, {{0, pb, {0, 0, 0, 1, 1, 1}}});
  EXPECT_LT(max_diff(lp.data(), lb.data(), V), 1e-4f);
  EXPECT_EQ(padded.n_valid(0), 3);
  EXPECT_EQ(padded.length(0), 6);
}

TEST_P(Forward, SamplesOfOnePromptShareItsPrefillAndStayIndependent) {
  auto rt = open_model(tiny_model(GetParam()));
  GenerateOptions g;
  g.sampling.temperature = 0.0f;
  g.max_tokens = 10;
  g.n = 3;
  g.stop_at_eos = false;
  const auto c = generate(*rt->model, {2, 40, 41}, g);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].tokens.size(), 10u);
  for (const auto& s : c)
    for (size_t i = 0; i < s.tokens.size(); ++i) EXPECT_EQ(s.tokens[i].id, c[0].tokens[i].id);
}

TEST_P(Forward, ReportsCacheAndContextOverflow) {
  auto rt = open_model(tiny_model(GetParam()));
  OptModel& m = *rt->model;
  KvCache small = m.make_cache(1, 2);
  EXPECT_THROW(m.forward(small, {{0, {2, 3, 4}, {}}}), Error);
  KvCache big = m.make_cache(1, 80);  // more slots than the 64 positions the model has
  std::vector<int32_t> ids(65, 5);
  EXPECT_THROW(m.forward(big, {{0, ids, {}}}), Error);
}

INSTANTIATE_TEST_SUITE_P(PreAndPostLN, Forward, ::testing::Values(false, true));

}  // namespace
