// Single-file conversion between .pt (torch zip or legacy) and .safetensors, with an optional
// dtype change of floating-point tensors. Streams: tensors go from the input map to the output
// file, converted block by block when a dtype is given.
#pragma once

#include <optional>
#include <string>

#include "tensor/dtype.h"

namespace optforge {

struct FileConvertOptions {
  std::optional<DType> dtype;  // cast floating tensors to this; others untouched
};

enum class OutputKind { Torch, Safetensors };
// From the output name: .safetensors -> safetensors; .pt .pth .bin .ckpt -> torch.
OutputKind output_kind_for(const std::string& path);

void convert_file(const std::string& in, const std::string& out, const FileConvertOptions& opts);

}  // namespace optforge
