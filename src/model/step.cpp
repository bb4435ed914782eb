#include "model/step.h"

#include <set>

#include "model/kv_cache.h"
#include "opt/config.h"
#include "util/error.h"

namespace optforge {

Step plan_step(const KvCache& cache, const std::vector<SeqTokens>& batch) {
  Step s;
  std::set<int64_t> seen;
  for (const SeqTokens& b : batch) {
    if (b.seq < 0 || b.seq >= cache.sequences())
      throw Error("sequence " + std::to_string(b.seq) + " is not in the cache");
    if (!seen.insert(b.seq).second) throw Error("sequence " + std::to_string(b.seq) + " appears twice in one step");
    if (!b.mask.empty() && b.mask.size() != b.tokens.size()) throw Error("mask and tokens differ in length");
    if (b.tokens.empty()) continue;
    s.seqs.push_back({b.seq, s.rows(), int64_t(b.tokens.size()), cache.length(b.seq)});
    int64_t n_valid = cache.n_valid(b.seq);
    for (size_t i = 0; i < b.tokens.size(); ++i) {
      const bool real = b.mask.empty() || b.mask[i];
      // HF/metaseq: position = cumsum(mask) * mask - 1 (padding: -1), looked up at + offset.
      if (real) ++n_valid;
      s.tokens.push_back(b.tokens[i]);
      s.positions.push_back(int32_t((real ? n_valid - 1 : -1) + kPositionOffset));
      s.mask.push_back(real ? 1 : 0);
    }
  }
  return s;
}

}  // namespace optforge
