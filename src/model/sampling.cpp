#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace optforge {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

void apply_repetition_penalty(std::vector<float>& scores, const std::vector<int32_t>& history, float penalty) {
  if (penalty == 1.0f) return;
  std::unordered_set<int32_t> seen;
  for (int32_t id : history) {
    if (id < 0 || size_t(id) >= scores.size() || !seen.insert(id).second) continue;
    float& s = scores[size_t(id)];
    s = s < 0 ? s * penalty : s / penalty;
  }
}

void apply_temperature(std::vector<float>& scores, float temperature) {
  if (temperature == 1.0f) return;
  for (float& s : scores) s /= temperature;
}

void apply_top_k(std::vector<float>& scores, int64_t k) {
  if (k <= 0 || size_t(k) >= scores.size()) return;
  std::vector<float> sorted = scores;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float threshold = sorted[size_t(k - 1)];
  for (float& s : scores)
    if (s < threshold) s = kNegInf;
}

void apply_top_p(std::vector<float>& scores, float p) {
  if (p >= 1.0f) return;
  std::vector<int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // Ascending, as HF sorts; stable so that ties resolve the same way every run.
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return scores[size_t(a)] < scores[size_t(b)]; });
  const float mx = scores[size_t(order.back())];
  std::vector<float> probs(order.size());
  float sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += probs[i] = std::exp(scores[size_t(order[i])] - mx);
  float cum = 0;
  for (size_t i = 0; i + 1 < order.size(); ++i) {  // the last (most likely) always stays
    cum += probs[i] / sum;
    if (cum <= 1.0f - p) scores[size_t(order[i])] = kNegInf;
  }
}

void process_logits(std::vector<float>& scores, const std::vector<int32_t>& history, const SamplingParams& p) {
  apply_repetition_penalty(scores, history, p.repetition_penalty);
  if (p.greedy()) return;
  apply_temperature(scores, p.temperature);
  apply_top_k(scores, p.top_k);
  apply_top_p(scores, p.top_p);
}

int32_t choose_token(const std::vector<float>& scores, bool greedy, Rng& rng) {
  const auto best = std::max_element(scores.begin(), scores.end());  // first maximum
  if (greedy) return int32_t(best - scores.begin());
  // Inverse CDF in id order: reproducible from the seed alone, and O(V) with no sort.
  double sum = 0;
  for (float v : scores)
    if (v != kNegInf) sum += std::exp(double(v) - double(*best));
  const double u = rng.uniform() * sum;
  double cum = 0;
  int32_t last = int32_t(best - scores.begin());
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i] == kNegInf) continue;
    cum += std::exp(double(scores[i]) - double(*best));
    last = int32_t(i);
    if (u < cum) return last;
  }
  return last;  // u landed on rounding at the very top
}

std::vector<float> log_softmax(const float* logits, int64_t n) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = double(mx) + std::log(sum);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = float(double(logits[i]) - lse);
  return out;
}

std::vector<TokenLogprob> top_logprobs(const std::vector<float>& logprobs, int64_t k) {
  k = std::min<int64_t>(k, int64_t(logprobs.size()));
  if (k <= 0) return {};
  std::vector<int32_t> ids(logprobs.size());
  std::iota(ids.begin(), ids.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return logprobs[size_t(a)] > logprobs[size_t(b)] || (logprobs[size_t(a)] == logprobs[size_t(b)] && a < b);
  };
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
  std::vector<TokenLogprob> out;
  for (int64_t i = 0; i < k; ++i) out.push_back({ids[size_t(i)], logprobs[size_t(ids[size_t(i)])]});
  return out;
}

}  // namespace optforge
