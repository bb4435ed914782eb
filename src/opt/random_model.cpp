#include "opt/random_model.h"

#include <cmath>
#include <cstring>

#include "opt/roles.h"
#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Element i of tensor `tid`: uniform in [center - scale, center + scale], a pure function of
// (seed, tid, i) so any block can be produced independently.
struct Init {
  float center, scale;
};

Init init_for(Kind kind, int64_t embed_dim) {
  if (kind == Kind::NormWeight) return {1.0f, 0.05f};
  if (kind == Kind::NormBias || kind == Kind::Bias) return {0.0f, 0.02f};
  // ~ N(0, 1/sqrt(E)) variance as uniform: keeps activations in range through many layers.
  return {0.0f, float(std::sqrt(3.0 / double(embed_dim)))};
}

ValuePtr ns_field_dict(std::initializer_list<std::pair<const char*, ValuePtr>> kv) {
  auto d = Value::dict();
  for (const auto& [k, v] : kv) d->set(k, v);
  return d;
}

}  // namespace

Tensor metaseq_version_buffer(DType dtype) {
  Tensor version = Tensor::empty(dtype, {1});
  const float three = 3.0f;
  convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(&three), dtype, version.storage->mutable_data(), 1);
  return version;
}

ValuePtr metaseq_cfg(const OptConfig& c, int64_t mp, DType dtype) {
  // metaseq's decoder always has biases and affine layer norms: no cfg field can say otherwise.
  if (!c.enable_bias)
    throw Error("metaseq's OPT model cannot express enable_bias false (its layers always have biases)");
  if (!c.ln_affine)
    throw Error(
        "metaseq's OPT model cannot express layer_norm_elementwise_affine false (its layer norms always "
        "have weights)");
  const bool megatron = c.pre_ln;  // 350m was trained without model parallelism (transformer_lm_gpt)
  const std::string arch = megatron ? "transformer_lm_megatron" : "transformer_lm_gpt";
  auto model = Value::object("argparse.Namespace", {},
                             ns_field_dict({
                                 {"_name", Value::str(arch)},
                                 {"arch", Value::str(arch)},
                                 {"activation_fn", Value::str(metaseq_activation_name(c.activation))},
                                 {"dropout", Value::real(0.1)},
                                 {"attention_dropout", Value::real(0.1)},
                                 {"decoder_embed_dim", Value::integer(c.embed_dim)},
                                 {"decoder_ffn_embed_dim", Value::integer(c.ffn_dim)},
                                 {"decoder_layers", Value::integer(c.layers)},
                                 {"decoder_attention_heads", Value::integer(c.heads)},
                                 {"decoder_input_dim", Value::integer(c.input_dim)},
                                 {"decoder_output_dim", Value::integer(c.input_dim)},
                                 {"decoder_learned_pos", Value::boolean(true)},
                                 {"decoder_normalize_before", Value::boolean(c.pre_ln)},
                                 {"share_decoder_input_output_embed", Value::boolean(true)},
                                 {"no_scale_embedding", Value::boolean(true)},
                                 {"max_target_positions", Value::integer(c.max_positions)},
                                 {"tokens_per_sample", Value::integer(c.max_positions)},
                                 {"model_parallel_size", Value::integer(mp)},
                             }));
  // fairseq/metaseq's switch for a pre-LN decoder without its final LN (written only when set,
  // so that released-style cfgs keep their field set).
  if (c.remove_final_norm) model->state->set("no_decoder_final_norm", Value::boolean(true));
  auto cfg = Value::dict();
  cfg->set("_name", Value::none());
  cfg->set("common", ns_field_dict({{"fp16", Value::boolean(dtype == DType::F16)},
                                    {"memory_efficient_fp16", Value::boolean(dtype == DType::F16)},
                                    {"bf16", Value::boolean(dtype == DType::BF16)},
                                    {"model_parallel_size", Value::integer(mp)}}));
  cfg->set("distributed_training", ns_field_dict({{"distributed_world_size", Value::integer(mp)},
                                                  {"ddp_backend", Value::str("fully_sharded")},
                                                  {"use_sharded_state", Value::boolean(true)}}));
  cfg->set("checkpoint", ns_field_dict({{"checkpoint_suffix", Value::str("")}}));
  cfg->set("model", model);
  cfg->set("task", ns_field_dict({{"_name", Value::str("streaming_language_modeling")}}));
  return cfg;
}

ValuePtr random_opt_checkpoint(const OptConfig& c, DType dtype, uint64_t seed) {
  c.validate();
  if (!is_floating(dtype) || dtype == DType::F64) throw Error("demo models are f32, f16 or bf16");
  auto model = Value::dict();
  uint64_t tid = 0;
  for (const ParamSpec& p : layout_params(c, Layout::Metaseq)) {
    auto s = std::make_shared<Storage>();
    s->dtype = dtype;
    int64_t numel = 1;
    for (auto d : p.shape) numel *= d;
    s->nbytes = uint64_t(numel) * dtype_size(dtype);
    const Init init = init_for(role_spec(p.ref.role).kind, c.embed_dim);
    const uint64_t key = splitmix64(seed ^ splitmix64(++tid));
    s->generate = [key, init, dtype](uint64_t byte_offset, uint8_t* dst, size_t n) {
      const size_t es = dtype_size(dtype);
      for (uint64_t i = byte_offset / es, end = (byte_offset + n) / es; i < end; ++i, dst += es) {
        // 24 random bits -> [-1, 1)
        float u = float(int64_t(splitmix64(key + i) >> 40) - (1 << 23)) / float(1 << 23);
        float v = init.center + init.scale * u;
        if (dtype == DType::F32)
          std::memcpy(dst, &v, 4);
        else if (dtype == DType::F16) {
          uint16_t h = f32_to_f16(v);
          std::memcpy(dst, &h, 2);
        } else {
          uint16_t h = f32_to_bf16(v);
          std::memcpy(dst, &h, 2);
        }
      }
    };
    model->entries.emplace_back(Value::str(p.name), Value::of_tensor(Tensor::view_of(s, p.shape)));
  }
  model->set("decoder.version", Value::of_tensor(metaseq_version_buffer(dtype)));

  auto root = Value::dict();
  root->set("cfg", metaseq_cfg(c, 1, dtype));
  root->set("model", model);
  root->set("criterion", Value::none());
  root->set("optimizer_history", Value::list());
  root->set("task_state", Value::dict());
  root->set("extra_state", Value::dict());
  return root;
}

}  // namespace optforge
