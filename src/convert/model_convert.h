// `optforge convert IN -o OUT --to FORMAT`: any OPT model layout optforge reads to any it writes,
// through the one OptTensors stream.
#pragma once

#include <optional>
#include <string>

#include "convert/model_writers.h"
#include "tensor/quantize.h"

namespace optforge {

enum class ModelFormat { Hf, Safetensors, Alpa, AlpaTree, Metaseq };
std::optional<ModelFormat> model_format_from_name(const std::string& s);

struct ModelConvertOptions {
  ModelFormat to = ModelFormat::Hf;
  std::optional<DType> dtype;  // casts the floating-point tensors (not int8 matrices nor their f32 scales)
  // Int8: every matmul weight stored as I8 [N, K] + "<name>_scale" F32 [N] (tensor/quantize.h),
  // quantized from the input's own precision while it is written. Only hf (safetensors) and
  // safetensors outputs can hold it; an input already int8 is written as it is.
  Quantization quantize = Quantization::None;
  HfWriteOptions hf;
  int64_t mp = 1;     // metaseq: model-parallel parts
  int64_t heads = 0;  // when the input does not say
  int threads = 1;
};

// Throws optforge::Error for a quantized model (input or --quantize) to a layout that cannot hold it.
void convert_model(const std::string& in, const std::string& out, const ModelConvertOptions& o);

}  // namespace optforge
