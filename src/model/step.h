// One forward step: new tokens for some of the cache's sequences, each with its own count and
// its own positions. Positions follow HF/metaseq: computed from the attention mask, offset by
// kPositionOffset (opt/config.h), so a sequence's first real token uses row 2 of the position
// table whatever padding precedes it, and padding uses row 1.
#pragma once

#include <cstdint>
#include <vector>

namespace optforge {

class KvCache;

// What a caller asks for: append `tokens` to sequence `seq` of the cache. `mask` (1 real,
// 0 padding) may be empty, meaning every token is real.
struct SeqTokens {
  int64_t seq = 0;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
};

struct Step {
  struct Seq {
    int64_t seq;    // cache sequence
    int64_t row0;   // first row of this sequence in the step's activations
    int64_t rows;   // new tokens
    int64_t start;  // cache slot of the first new token
  };
  std::vector<Seq> seqs;
  std::vector<int32_t> tokens;     // every new token, sequence after sequence
  std::vector<int32_t> positions;  // position-table row of each
  std::vector<uint8_t> mask;       // 1 real, 0 padding
  int64_t rows() const { return int64_t(tokens.size()); }
};

Step plan_step(const KvCache& cache, const std::vector<SeqTokens>& batch);

}  // namespace optforge
