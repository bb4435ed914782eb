#include "convert/file_convert.h"

#include <unordered_map>

#include "formats/any_file.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "util/error.h"

namespace optforge {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

OutputKind output_kind_for(const std::string& path) {
  if (ends_with(path, ".safetensors")) return OutputKind::Safetensors;
  for (const char* ext : {".pt", ".pth", ".bin", ".ckpt"})
    if (ends_with(path, ext)) return OutputKind::Torch;
  throw Error("cannot tell the output format from the name: expected .pt, .pth, .bin, .ckpt or .safetensors", path);
}

void convert_file(const std::string& in, const std::string& out, const FileConvertOptions& opts) {
  const OutputKind kind = output_kind_for(out);
  AnyFile f = open_any(in);
  // An int8-quantized file (docs/formats.md) is marked only in its safetensors metadata, and its
  // scales must stay f32: a .pt/.bin copy would lose the mark, a --dtype cast would break them.
  for (const auto& [key, value] : f.metadata)
    if (key == kQuantizationKey && (kind != OutputKind::Safetensors || opts.dtype))
      throw Error("is quantized (" + value + "); a file-to-file convert keeps it only as .safetensors without --dtype",
                  in);
  std::unordered_map<const Storage*, std::shared_ptr<Storage>> cast_cache;
  auto cast = [&](const Tensor& t) {
    return opts.dtype && is_floating(t.dtype) ? lazy_cast(t, *opts.dtype, cast_cache) : t;
  };
  if (kind == OutputKind::Safetensors) {
    if (f.torch) f.torch->verify_crc();  // safetensors output re-lays bytes out: check them first
    auto tensors = state_dict(f);
    if (tensors.empty()) throw Error("no tensors to write: the file holds no state dict", in);
    for (auto& [name, t] : tensors) t = cast(t);
    auto metadata = f.metadata;
    if (metadata.empty()) metadata = {{"format", "pt"}};
    save_safetensors(out, tensors, metadata);
    return;
  }
  ValuePtr root = map_tensors(f.root, cast);
  save_torch_file(out, root);
}

}  // namespace optforge
