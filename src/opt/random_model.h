// A deterministic random OPT model of any published (or custom) shape, as a metaseq singleton
// checkpoint value tree. Weights are generated on the fly while the file is written, so even a
// 175B-shaped demo needs no more memory than one block. Same seed, same bits, on any machine.
#pragma once

#include <cstdint>

#include "opt/config.h"
#include "pickle/value.h"

namespace optforge {

// {'cfg': {... 'model': Namespace(...)}, 'model': {name: tensor}, 'criterion': None, ...}
ValuePtr random_opt_checkpoint(const OptConfig& c, DType dtype, uint64_t seed);

// The `decoder.version` buffer metaseq keeps: one element, 3.0, in the weights' dtype.
Tensor metaseq_version_buffer(DType dtype);

// The metaseq cfg for a config (cfg['model'] is an argparse.Namespace, as metaseq writes it).
ValuePtr metaseq_cfg(const OptConfig& c, int64_t model_parallel_size, DType dtype);

}  // namespace optforge
