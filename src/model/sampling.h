// Choosing the next token as HF's `generate` does: the logits processors in HF's order
// (repetition penalty, then temperature, top-k, top-p), then argmax or a draw. The draw takes
// its uniform number from our own seeded generator (inverse CDF over the kept tokens in id
// order), so a seed reproduces a run exactly; torch's RNG stream is not imitated.
#pragma once

#include <cstdint>
#include <vector>

namespace optforge {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int64_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float repetition_penalty = 1.0f;  // 1: off
  uint64_t seed = 0;
  bool greedy() const { return temperature <= 0.0f; }
};

// splitmix64-seeded xoshiro256**: small, fast, identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)
 private:
  uint64_t s_[4];
};

// Each processor works in place on f32 scores; removed tokens become -inf.
// Every distinct id in `history` (prompt and generated): score * p if negative, else score / p.
void apply_repetition_penalty(std::vector<float>& scores, const std::vector<int32_t>& history, float penalty);
void apply_temperature(std::vector<float>& scores, float temperature);
// Keeps every score >= the k-th largest (ties at the threshold survive, as in HF).
void apply_top_k(std::vector<float>& scores, int64_t k);
// Keeps the most probable tokens whose mass reaches p (HF: drops those whose ascending
// cumulative probability is <= 1 - p, always keeping the best one).
void apply_top_p(std::vector<float>& scores, float p);

// The processed scores for these params (penalty always; warpers only when sampling).
void process_logits(std::vector<float>& scores, const std::vector<int32_t>& history, const SamplingParams& p);
// argmax (lowest id on ties) when greedy, else a draw from softmax(scores).
int32_t choose_token(const std::vector<float>& scores, bool greedy, Rng& rng);

struct TokenLogprob {
  int32_t id;
  float logprob;
};
// log_softmax of raw logits, in double for the normaliser.
std::vector<float> log_softmax(const float* logits, int64_t n);
// The k most likely, best first (lowest id first on ties).
std::vector<TokenLogprob> top_logprobs(const std::vector<float>& logprobs, int64_t k);

}  // namespace optforge
