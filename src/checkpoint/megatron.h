// Megatron tensor parallelism (docs/spec-checkpoints.md §Megatron split): how each tensor is split across
// model parts, and regrouping P parts into M parts (M = 1: gluing), as byte producers.
//
// Classification is the role table's split rule (opt/roles.h), which agrees with metaseq's
// glue_megatron_parts: qkv (fused K,V,Q row blocks per part), fc1/k_proj/q_proj/v_proj (dim 0),
// fc2/out_proj (weight dim 1, bias replicated), embed_tokens.weight (dim 0, vocab-parallel),
// layer norms and positions replicated. Names outside the table: ffn_layernorm (dim 0, metaseq's
// rule) and everything else replicated (decoder.version, unknown names: kept, never dropped). Unlike metaseq,
// replicated tensors that differ across parts are reported (check_replicated), and splitting into more parts is
// supported.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/fsdp.h"
#include "opt/roles.h"

namespace optforge::ckpt {

// How a metaseq tensor is split across model parts: the role table's rule (Vocab and Column:
// dim 0; Row: dim 1; FusedColumn: per K, V, Q block), else ffn_layernorm Column and anything
// else Replicated.
TpSplit classify(const std::string& name);

// Tensor `name` of part m of M, from its P part tensors (all of the same shape; checked).
// For FusedColumn (qkv) the result keeps the fused [K_m; V_m; Q_m] layout. Throws (naming the tensor) if M
// does not divide the split dimension.
struct Regrouped {
  Shape shape;
  ProducerPtr bytes;
};
Regrouped regroup(const std::vector<const PartTensor*>& parts, int64_t M, int64_t m);

// Gluing a fused qkv tensor into one part: the full K, V and Q (metaseq writes them as
// k_proj/v_proj/q_proj), each of E rows.
std::vector<Regrouped> glue_qkv(const std::vector<const PartTensor*>& parts);

// A replicated tensor that differs between parts: part `part` vs part 0.
struct ReplicaDiff {
  std::string name;
  size_t part = 0;
  uint64_t elements_differing = 0;
  double max_abs_diff = 0;
};
// Compares every part's bytes with part 0's (reads them all; bounded buffers).
std::vector<ReplicaDiff> check_replicated(const std::vector<const PartTensor*>& parts);

}  // namespace optforge::ckpt
