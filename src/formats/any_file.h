// Opens any single file optforge reads (torch zip, torch legacy, safetensors, numpy .npz), detected from its
// bytes rather than its name, and presents it as one value tree whose leaves are tensors.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "formats/safetensors.h"
#include "formats/torch_file.h"

namespace optforge {

enum class FileFormat { TorchZip, TorchLegacy, Safetensors, Npz };
const char* file_format_name(FileFormat f);

struct AnyFile {
  std::string path;
  FileFormat format;
  ValuePtr root;                                              // safetensors: a dict name -> tensor
  std::vector<std::pair<std::string, std::string>> metadata;  // safetensors __metadata__
  std::shared_ptr<TorchFile> torch;                           // torch formats only
};

AnyFile open_any(const std::string& path, const TorchLoadOptions& opts = {});
// The same from an already mapped file (or MappedFile::from_bytes); errors name file->path().
AnyFile open_any(std::shared_ptr<MappedFile> file, const TorchLoadOptions& opts = {});

// The tensors that make up the model's state dict, by name: the `model` dict of a metaseq
// checkpoint, else the root dict's tensors (a plain state dict or a safetensors file).
std::vector<std::pair<std::string, Tensor>> state_dict(const AnyFile& f);

// Short description of a checkpoint's layout ("metaseq FSDP shard (flat params, shard_metadata)",
// "metaseq singleton", "Hugging Face OPT state dict", "state dict", ...).
std::string describe_layout(const AnyFile& f);

}  // namespace optforge
