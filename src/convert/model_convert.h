// `optforge convert IN -o OUT --to FORMAT`: any OPT model layout optforge reads to any it writes,
// through the one OptTensors stream.
#pragma once

#include <optional>
#include <string>

#include "convert/model_writers.h"

namespace optforge {

enum class ModelFormat { Hf, Safetensors, Alpa, AlpaTree, Metaseq };
std::optional<ModelFormat> model_format_from_name(const std::string& s);

struct ModelConvertOptions {
  ModelFormat to = ModelFormat::Hf;
  std::optional<DType> dtype;
  HfWriteOptions hf;
  int64_t mp = 1;     // metaseq: model-parallel parts
  int64_t heads = 0;  // when the input does not say
  int threads = 1;
};

void convert_model(const std::string& in, const std::string& out, const ModelConvertOptions& o);

}  // namespace optforge
