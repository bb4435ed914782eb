// The logits processors follow HF's definitions (transformers/generation/logits_process.py);
// expected values here are worked out by hand from those definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "model/sampling.h"

using namespace optforge;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
}

TEST(Sampling, RepetitionPenaltyOncePerDistinctIdBySign) {
  std::vector<float> s = {2.0f, -2.0f, 1.0f, 4.0f};
  apply_repetition_penalty(s, {0, 1, 1, 1, 3}, 2.0f);
  EXPECT_EQ(s, (std::vector<float>{1.0f, -4.0f, 1.0f, 2.0f}));
}

TEST(Sampling, TopKKeepsTiesAtTheThreshold) {
  std::vector<float> s = {1.0f, 3.0f, 2.0f, 2.0f, 0.5f};
  apply_top_k(s, 2);
  EXPECT_EQ(s, (std::vector<float>{-kInf, 3.0f, 2.0f, 2.0f, -kInf}));
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  // probabilities 0.5, 0.3, 0.2 (logs): with p = 0.75 the ascending cumulative sums are
  // 0.2, 0.5, 1.0; entries with cum <= 0.25 go: only the 0.2 one.
  std::vector<float> s = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  apply_top_p(s, 0.75f);
  EXPECT_EQ(s[2], -kInf);
  EXPECT_NE(s[1], -kInf);
  // p tiny: only the best survives.
  std::vector<float> t = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  apply_top_p(t, 0.01f);
  EXPECT_NE(t[0], -kInf);
  EXPECT_EQ(t[1], -kInf);
  EXPECT_EQ(t[2], -kInf);
}

TEST(Sampling, GreedyTakesTheFirstMaximumAndIgnoresWarpers) {
  Rng rng(0);
  EXPECT_EQ(choose_token({1.0f, 5.0f, 5.0f, 2.0f}, true, rng), 1);
  std::vector<float> s = {1.0f, 3.0f, 2.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = 1;
  process_logits(s, {}, p);
  EXPECT_EQ(s, (std::vector<float>{1.0f, 3.0f, 2.0f}));
}

TEST(Sampling, DrawsFollowTheDistributionAndTheSeed) {
  const std::vector<float> s = {std::log(0.7f), std::log(0.2f), std::log(0.1f), -kInf};
  Rng rng(42);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[choose_token(s, false, rng)];
  EXPECT_EQ(counts.count(3), 0u);
  EXPECT_NEAR(counts[0] / double(n), 0.7, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.2, 0.02);
  Rng a(7), b(7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next(), b.next());
}

TEST(Sampling, LogSoftmaxAndTopLogprobs) {
  const std::vector<float> logits = {0.0f, 1.0f, 1.0f, -1.0f};
  const auto lp = log_softmax(logits.data(), 4);
  const double lse = std::log(1 + 2 * std::exp(1.0) + std::exp(-1.0));
  EXPECT_NEAR(lp[1], 1.0 - lse, 1e-6);
  const auto top = top_logprobs(lp, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);  // ties: lowest id first
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 0);
}
