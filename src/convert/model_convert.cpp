#include "convert/model_convert.h"

#include <unordered_map>

#include "checkpoint/reshard.h"
#include "tensor/convert.h"
#include "tensor/quantize_int4.h"
#include "util/error.h"

namespace optforge {

std::optional<ModelFormat> model_format_from_name(const std::string& s) {
  if (s == "hf") return ModelFormat::Hf;
  if (s == "safetensors") return ModelFormat::Safetensors;
  if (s == "alpa") return ModelFormat::Alpa;
  if (s == "alpa-tree") return ModelFormat::AlpaTree;
  if (s == "metaseq") return ModelFormat::Metaseq;
  return std::nullopt;
}

namespace {

// Every matmul weight not already quantized replaced by its lazily quantized form (computed while
// it is written), its scales beside it. An input already int8 or int4 stays as it is.
void quantize_matmul_weights(OptTensors& m, Quantization scheme) {
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    auto& [name, t] = m.tensors[i];
    if (!role_spec(m.roles[i].role).is_matmul() || t.dtype == DType::I8 || t.dtype == DType::U8) continue;
    const std::string hf_name = m.name_in(i, Layout::Hf);
    QuantizedTensors q = scheme == Quantization::Int4 ? quantize_int4_lazy(t, m.layout, hf_name)
                                                      : quantize_int8_lazy(t, m.layout, hf_name);
    t = q.q;
    m.scales[i] = q.scale;
  }
}

}  // namespace

void convert_model(const std::string& in, const std::string& out, const ModelConvertOptions& o) {
  ReadModelOptions ro;
  ro.heads = o.heads;
  ro.threads = o.threads;
  OptTensors m = read_opt_model(in, ro);
  const bool holds_int8 = o.to == ModelFormat::Safetensors || (o.to == ModelFormat::Hf && o.hf.safetensors);
  if ((o.quantize != Quantization::None || !m.scales.empty()) && !holds_int8)
    throw Error((m.scales.empty() ? "--quantize " + std::string(quantization_name(o.quantize))
                                  : std::string("an ") + (m.dtype_of_quantized() == DType::U8 ? "int4" : "int8") +
                                        "-quantized input") +
                    " can be written only as safetensors (--to hf with --format safetensors, or --to safetensors)",
                in);
  if (o.quantize != Quantization::None) quantize_matmul_weights(m, o.quantize);
  if (o.dtype) {
    std::unordered_map<const Storage*, std::shared_ptr<Storage>> cache;
    for (auto& [name, t] : m.tensors)
      if (is_floating(t.dtype)) t = lazy_cast(t, *o.dtype, cache);
  }
  switch (o.to) {
    case ModelFormat::Hf: return write_hf(m, out, o.hf);
    case ModelFormat::Safetensors: return write_safetensors_state(m, out);
    case ModelFormat::Alpa: return write_alpa_folder(m, out);
    case ModelFormat::AlpaTree: return write_alpa_tree(m, out);
    case ModelFormat::Metaseq: {
      if (o.mp == 1) return write_metaseq_singleton(m, out);
      // MP parts as metaseq's released files: OUT/reshard-model_part-K.pt, flat, one per part.
      ckpt::ReshardOptions ro;
      ro.outdir = out;
      ro.mp = o.mp;
      ro.fsdp = 1;
      ro.prefix = "reshard";
      ro.shard_suffix = false;
      ro.threads = o.threads;
      ckpt::Plan plan = ckpt::plan_write_sharded(metaseq_singleton_root(m), ro);
      ckpt::ExecOptions eo;
      eo.threads = o.threads;
      eo.out = stderr;
      ckpt::execute(plan, eo);
      return;
    }
  }
}

}  // namespace optforge
