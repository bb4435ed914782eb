// The two matrix products of blocked attention, register-tiled (AVX2 where available):
// scores S = Q · Kᵀ and the output update O += P · V, for one block of queries and keys.
#pragma once

#include <cstdint>

namespace optforge::cpu {

// s[r * lds + t] = q_r · k_t for r < rows (q rows at stride ldq), t < n (k rows at stride hd).
void block_scores(const float* q, int64_t ldq, int64_t rows, const float* k, int64_t n, int64_t hd, float* s,
                  int64_t lds);

// acc[r * hd + j] += sum over t < n of p[r * ldp + t] * v[t * hd + j], for r < rows, j < hd.
void block_pv(const float* p, int64_t ldp, int64_t rows, const float* v, int64_t n, int64_t hd, float* acc);

}  // namespace optforge::cpu
