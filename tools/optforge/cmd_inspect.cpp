// optforge inspect FILE...: what a checkpoint holds: tensors (name, dtype, shape, size), the
// layout it is in, and the non-tensor structure (metaseq cfg, shard_metadata, other keys).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "commands.h"
#include "convert/opt_tensors.h"
#include "formats/any_file.h"
#include "io/crc32.h"
#include "pickle/value_json.h"
#include "tensor/quantize.h"
#include "tensor/quantize_int4.h"
#include "util/error.h"
#include "util/human.h"

namespace optforge::cli {
namespace {

using json = nlohmann::ordered_json;

struct Options {
  std::vector<std::string> files;
  bool json_out = false;
  bool checksum = false;
  bool permissive = false;
};

// CRC-32 of a tensor's logical bytes; also drops the pages from our resident set afterwards, so
// checksumming a file larger than memory stays small. A tensor that is its whole storage has the
// CRC its zip record carries, which --checksum has just verified: no second pass over the data.
uint32_t tensor_crc(const Tensor& t, const AnyFile& f) {
  if (t.storage->source_crc32 && t.offset == 0 && t.is_contiguous() && t.nbytes() == t.storage->nbytes)
    return *t.storage->source_crc32;
  uint32_t c = 0;
  t.for_each_chunk([&](const uint8_t* p, size_t n) { c = crc32_update(c, p, n); });
  if (f.torch && t.storage && t.storage->data >= f.torch->file->data() &&
      t.storage->data < f.torch->file->data() + f.torch->file->size())
    f.torch->file->advise_done(uint64_t(t.storage->data - f.torch->file->data()), t.storage->nbytes);
  return c;
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

void summarize_cfg(const ValuePtr& cfg, std::ostream& out) {
  if (!cfg) return;
  ValuePtr model = cfg->attr("model");
  if (!model) return;
  static const char* kFields[] = {"_name",
                                  "arch",
                                  "decoder_layers",
                                  "decoder_embed_dim",
                                  "decoder_ffn_embed_dim",
                                  "decoder_attention_heads",
                                  "decoder_input_dim",
                                  "max_target_positions",
                                  "decoder_normalize_before",
                                  "model_parallel_size",
                                  "activation_fn"};
  out << "cfg.model (" << model->type_name() << "):";
  for (const char* k : kFields)
    if (auto v = model->attr(k)) out << " " << k << "=" << value_to_short_string(v, 40);
  out << "\n";
}

void summarize_shard_metadata(const ValuePtr& sm, std::ostream& out) {
  if (!sm || !sm->is_dict()) return;
  auto pm = sm->get("param_metadata");
  if (!pm || !pm->is_sequence()) return;
  out << "shard_metadata: " << pm->items.size() << " FSDP instances\n";
  for (const auto& inst : pm->items) {
    if (!inst->is_dict()) continue;
    auto path = inst->get("fsdp_path");
    auto params = inst->get("params");
    if (!params || !params->is_dict()) continue;
    for (const auto& [k, p] : params->entries) {
      auto names = p->get("names");
      auto pad = p->get("padding");
      out << "  '" << (path && path->is_str() ? path->s : "?") << "' " << (k->is_str() ? k->s : "?") << ": "
          << (names && names->is_sequence() ? names->items.size() : 0) << " params, padding "
          << (pad ? value_to_short_string(pad) : "?") << "\n";
    }
  }
}

json inspect_json(const AnyFile& f, const Options& o) {
  json j;
  j["file"] = f.path;
  j["format"] = file_format_name(f.format);
  j["layout"] = describe_layout(f);
  if (f.torch && f.format == FileFormat::TorchZip) j["archive"] = f.torch->archive_name;
  json ts = json::array();
  uint64_t total = 0;
  for (const auto& nt : collect_tensors(f.root)) {
    const Tensor& t = *nt.tensor;
    json e = {{"name", nt.name},
              {"dtype", std::string(dtype_name(t.dtype))},
              {"shape", t.shape},
              {"nbytes", t.nbytes()},
              {"storage_offset", t.offset},
              {"contiguous", t.is_contiguous()}};
    if (o.checksum) e["crc32"] = hex32(tensor_crc(t, f));
    total += t.nbytes();
    ts.push_back(std::move(e));
  }
  j["tensors"] = std::move(ts);
  j["tensor_bytes"] = total;
  if (f.torch) j["storages"] = f.torch->storages.size();
  if (!f.metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : f.metadata) m[k] = v;
    j["metadata"] = m;
  }
  // The non-tensor structure, tensors shown as descriptors (the state dict itself is elided).
  if (f.root->is_dict() && f.format != FileFormat::Safetensors) {
    json s = json::object();
    for (const auto& [k, v] : f.root->entries) {
      std::string key = k->is_str() ? k->s : value_to_short_string(k);
      if (key == "model" && v->is_dict())
        s[key] = {{"tensors", v->entries.size()}};
      else
        s[key] = value_to_json(v);
    }
    j["structure"] = std::move(s);
  }
  return j;
}

void inspect_text(const AnyFile& f, const Options& o, std::ostream& out) {
  auto tensors = collect_tensors(f.root);
  uint64_t total = 0;
  for (const auto& nt : tensors) total += nt.tensor->nbytes();
  out << f.path << ": " << file_format_name(f.format);
  if (f.torch && f.format == FileFormat::TorchZip) out << " (archive '" << f.torch->archive_name << "')";
  out << ", " << tensors.size() << " tensors";
  if (f.torch) out << " in " << f.torch->storages.size() << " storages";
  out << ", " << human_bytes(total) << "\n";
  out << "layout: " << describe_layout(f) << "\n";
  size_t w = 4;
  for (const auto& nt : tensors) w = std::max(w, nt.name.size());
  for (const auto& nt : tensors) {
    const Tensor& t = *nt.tensor;
    char line[64];
    std::snprintf(line, sizeof line, "  %-5s ", std::string(dtype_name(t.dtype)).c_str());
    out << "  " << nt.name << std::string(w - nt.name.size(), ' ') << line << t.shape_string() << "  "
        << human_bytes(t.nbytes());
    if (!t.is_contiguous()) out << "  (strided view)";
    if (o.checksum) out << "  crc32=" << hex32(tensor_crc(t, f));
    out << "\n";
  }
  if (!f.metadata.empty()) {
    out << "metadata:";
    for (const auto& [k, v] : f.metadata) out << " " << k << "=" << v;
    out << "\n";
  }
  if (f.root->is_dict() && f.format != FileFormat::Safetensors) {
    summarize_cfg(f.root->get("cfg"), out);
    summarize_shard_metadata(f.root->get("shard_metadata"), out);
    for (const auto& [k, v] : f.root->entries) {
      std::string key = k->is_str() ? k->s : value_to_short_string(k);
      if (key == "model" || key == "cfg" || key == "shard_metadata") continue;
      if (v->is_tensor()) continue;
      out << key << ": " << value_to_short_string(v) << "\n";
    }
  }
}

std::string describe_model(const OptTensors& m) {
  const OptConfig& c = m.config;
  return "OPT-" + c.name + " shape: " + std::to_string(c.layers) + " layers, hidden " + std::to_string(c.embed_dim) +
         ", " + (m.heads_known ? std::to_string(c.heads) : std::string("?")) + " heads" +
         (m.heads_known ? "" : " (not recorded: pass --heads to convert or run it)") + ", ffn " +
         std::to_string(c.ffn_dim) + ", vocab " + std::to_string(c.vocab) + (c.pre_ln ? ", pre-LN" : ", post-LN") +
         (c.has_projections() ? ", project_in/out " + std::to_string(c.input_dim) : "") +
         (c.activation != Activation::Relu ? std::string(", ") + hf_activation_name(c.activation) : "") +
         (c.enable_bias ? "" : ", no biases") + (c.ln_affine ? "" : ", layer norms without weights") +
         (c.remove_final_norm ? ", no final layer norm" : "") + ", " + std::string(dtype_name(m.dtype())) +
         (m.scales.empty() ? ""
          : m.dtype_of_quantized() == DType::U8
              ? ", matmul weights int4 (" + std::string(kInt4Scheme) + ", packed two a byte)"
              : ", matmul weights int8 (" + std::string(kInt8Scheme) + ")");
}

// The model's tensors in order, each quantized matrix followed by its "<name>_scale".
std::vector<std::pair<std::string, Tensor>> named_with_scales(const OptTensors& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    out.push_back(m.tensors[i]);
    if (auto it = m.scales.find(i); it != m.scales.end())
      out.emplace_back(m.tensors[i].first + std::string(kScaleSuffix), it->second);
  }
  return out;
}

void run(const Options& o) {
  json all = json::array();
  for (const auto& path : o.files) {
    if (std::filesystem::is_directory(path)) {  // a model folder: HF or alpa
      ReadModelOptions ro;
      ro.heads_may_be_unknown = true;
      OptTensors m = read_opt_model(path, ro);
      if (o.json_out) {
        json t = json::array();
        for (const auto& [n, x] : named_with_scales(m))
          t.push_back({{"name", n}, {"dtype", std::string(dtype_name(x.dtype))}, {"shape", x.shape}});
        all.push_back(
            {{"file", path}, {"format", "folder"}, {"layout", m.layout}, {"model", describe_model(m)}, {"tensors", t}});
      } else {
        std::cout << path << ": " << m.layout << ", " << describe_model(m) << "\n";
        for (const auto& [n, x] : named_with_scales(m))
          std::cout << "  " << n << "  " << dtype_name(x.dtype) << "  " << x.shape_string() << "\n";
      }
      continue;
    }
    TorchLoadOptions lo;
    lo.unpickle.allow_unknown_globals = o.permissive;
    AnyFile f = open_any(path, lo);
    if (o.checksum && f.torch) f.torch->verify_crc();
    if (o.json_out)
      all.push_back(inspect_json(f, o));
    else
      inspect_text(f, o, std::cout);
  }
  if (o.json_out) std::cout << (all.size() == 1 ? all[0] : all).dump(1) << "\n";
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("inspect", "Show the tensors, layout and structure of checkpoint files");
  cmd->add_option("files", o->files, "Files (.pt zip or legacy, .safetensors, .npz) or model folders (HF, alpa)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_flag("--json", o->json_out, "Machine-readable output");
  cmd->add_flag("--checksum", o->checksum, "Verify every record's CRC-32 and print a CRC-32 of each tensor's data");
  cmd->add_flag("--permissive", o->permissive,
                "Read GLOBALs outside the allowlist as inert records instead of refusing the file (nothing is run)");
  cmd->callback([o] { run(*o); });
}

}  // namespace optforge::cli
