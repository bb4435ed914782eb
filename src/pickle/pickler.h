// Writes a Value tree as a protocol-2 pickle that torch.load(weights_only=True) accepts: plain
// containers, OrderedDict, tensors (as torch._utils._rebuild_tensor_v2 over persistent storage
// ids), and argparse.Namespace (the one class metaseq needs, in `cfg`). Other objects read from a
// file (omegaconf configs, sets of unknown classes) are written as the plain data they hold, so
// that no output ever needs code to load.
#pragma once

#include <functional>
#include <string>

#include "pickle/value.h"

namespace optforge {

// Called once per tensor; returns the storage key ("0", "1", ...) the tensor's storage is
// written under. The pickler then emits the tensor's offset, size and stride against it.
using StorageKeyFor = std::function<std::string(const Tensor&)>;

std::string pickle_value(const ValuePtr& root, const StorageKeyFor& storage_key);

// The plain data an object holds (DictConfig -> dict, ListConfig -> list, nodes -> their value,
// other records -> their state dict); used by the pickler and by `inspect --json`.
ValuePtr plain_data(const ValuePtr& v);

}  // namespace optforge
