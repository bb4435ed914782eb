#include "formats/any_file.h"

#include "formats/npy.h"
#include "io/mmap_file.h"
#include "io/zip_reader.h"
#include "opt/roles.h"
#include "util/error.h"

namespace optforge {

const char* file_format_name(FileFormat f) {
  switch (f) {
    case FileFormat::TorchZip: return "torch zip";
    case FileFormat::TorchLegacy: return "torch legacy";
    case FileFormat::Safetensors: return "safetensors";
    case FileFormat::Npz: return "numpy npz";
  }
  return "?";
}

AnyFile open_any(const std::string& path, const TorchLoadOptions& opts) {
  return open_any(MappedFile::open(path), opts);
}

AnyFile open_any(std::shared_ptr<MappedFile> m, const TorchLoadOptions& opts) {
  AnyFile a;
  a.path = m->path();
  const std::string& path = a.path;
  if (ZipReader::looks_like_zip(m->data(), m->size())) {
    // A zip of .npy members and no data.pkl: numpy's .npz.
    ZipReader zip(m->data(), m->size(), path);
    bool npz = !zip.entries().empty();
    for (const auto& e : zip.entries())
      npz = npz && e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0;
    if (npz) {
      a.format = FileFormat::Npz;
      a.root = Value::dict();
      for (const auto& e : zip.entries()) {
        zip.verify_crc(e);
        a.root->entries.emplace_back(Value::str(e.name.substr(0, e.name.size() - 4)),
                                     Value::of_tensor(load_npy(m, e.data_offset, e.size)));
      }
      return a;
    }
  } else if (looks_like_safetensors(m->data(), m->size())) {
    SafetensorsFile sf = load_safetensors(m);
    a.format = FileFormat::Safetensors;
    a.root = Value::dict();
    for (auto& [name, t] : sf.tensors) a.root->entries.emplace_back(Value::str(name), Value::of_tensor(t));
    a.metadata = sf.metadata;
    return a;
  }
  a.torch = std::make_shared<TorchFile>(load_torch_file(m, opts));
  a.format = a.torch->legacy ? FileFormat::TorchLegacy : FileFormat::TorchZip;
  a.root = a.torch->root;
  return a;
}

std::vector<std::pair<std::string, Tensor>> state_dict(const AnyFile& f) {
  ValuePtr sd = f.root;
  if (auto model = f.root->get("model"); model && model->is_dict())
    sd = model;
  else if (auto s = f.root->get("state_dict"); s && s->is_dict())
    sd = s;
  std::vector<std::pair<std::string, Tensor>> out;
  if (!sd->is_dict()) throw Error("the file holds a " + sd->type_name() + ", not a dict of tensors", f.path);
  for (const auto& [k, v] : sd->entries) {
    if (!v || !v->is_tensor()) continue;
    if (k->kind != Value::Kind::Str) throw Error("state dict key is a " + k->type_name() + ", expected str", f.path);
    out.emplace_back(k->s, *v->tensor);
  }
  return out;
}

std::string describe_layout(const AnyFile& f) {
  if (!f.root->is_dict()) return "a " + f.root->type_name();
  auto model = f.root->get("model");
  auto has_key_ending = [](const ValuePtr& d, const std::string& suffix) {
    for (const auto& [k, v] : d->entries)
      if (k->is_str() && k->s.size() >= suffix.size() &&
          k->s.compare(k->s.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    return false;
  };
  auto has_role = [](const ValuePtr& d, Role r) {  // by module and parameter name, wrappers aside
    for (const auto& [k, v] : d->entries)
      if (const RoleSpec* spec = k->is_str() ? role_by_module(k->s) : nullptr; spec && spec->role == r) return true;
    return false;
  };
  if (model && model->is_dict()) {
    bool flat = has_key_ending(model, "flat_param_0") || has_key_ending(model, "flat_param");
    bool meta = f.root->get("shard_metadata") && f.root->get("shard_metadata")->is_dict();
    if (flat && meta) return "metaseq FSDP shard (flat params with shard_metadata)";
    if (flat) return "metaseq flat checkpoint without shard_metadata (released reshard layout)";
    if (has_role(model, Role::QkvWeight)) return "metaseq unflattened model part (fused qkv_proj)";
    if (has_role(model, Role::TokenEmbed)) return "metaseq singleton (consolidated)";
    return "checkpoint with a 'model' dict";
  }
  if (f.format == FileFormat::Npz) {
    bool tree = !f.root->entries.empty();
    for (const auto& [k, v] : f.root->entries) tree = tree && parse_role_name(Layout::AlpaTree, k->s).has_value();
    return tree ? "alpa OPT parameter tree (qkv_combined, [in, out] kernels)" : "numpy arrays";
  }
  bool hf = false, metaseq = false;
  for (const auto& [k, v] : f.root->entries) {
    if (!k->is_str()) continue;
    hf |= parse_role_name(Layout::Hf, k->s) || parse_role_name(Layout::Hf, "model." + k->s);
    metaseq |= parse_role_name(Layout::Metaseq, k->s).has_value();
  }
  if (hf) return "OPT state dict (Hugging Face names)";
  if (metaseq) return "OPT state dict (metaseq names)";
  return "state dict";
}

}  // namespace optforge
