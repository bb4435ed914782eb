// alpa's two layouts (docs/spec-checkpoints.md §alpa layouts): the numpy folder its serving loads
// from disk, and the parameter tree its OPT model builds from that folder (load_params_np).
#include <cstring>
#include <filesystem>

#include "convert/model_writers.h"
#include "formats/npy.h"
#include "io/atomic_dir.h"
#include "opt/names.h"
#include "tensor/views.h"
#include "util/error.h"

namespace optforge {

namespace {

// alpa's fused attention input projection: kernel[c, 3*o + j] = W_j[o, c] with j = 0 (q), 1 (k),
// 2 (v) — the stack [3, out, in] permuted to [in, out, 3] — and bias[3*o + j] = b_j[o].
Tensor qkv_combined(const Tensor& q, const Tensor& k, const Tensor& v) {
  const bool is_bias = q.dim() == 1;
  const int64_t out = q.shape[0], in = is_bias ? 1 : q.shape[1];
  const size_t es = dtype_size(q.dtype);
  // The sources are made contiguous (a no-op for views of an input map; lazily produced ones are
  // materialised) on the first block and released after the last: one layer's q, k, v at a time.
  struct Sources {
    std::vector<Tensor> lazy, ready;
  };
  auto src = std::make_shared<Sources>();
  src->lazy = {q, k, v};
  auto s = std::make_shared<Storage>();
  s->dtype = q.dtype;
  s->nbytes = uint64_t(3 * out * in) * es;
  const uint64_t total = s->nbytes;
  s->generate = [src, out, in, es, total](uint64_t off, uint8_t* dst, size_t n) {
    if (src->ready.empty())
      for (const Tensor& t : src->lazy) src->ready.push_back(t.contiguous());
    for (uint64_t e = off / es, end = (off + n) / es; e < end; ++e, dst += es) {
      const int64_t c = int64_t(e) / (3 * out), r = int64_t(e) % (3 * out), o = r / 3, j = r % 3;
      std::memcpy(dst, src->ready[size_t(j)].data() + size_t(o * in + c) * es, es);
    }
    if (off + n == total) src->ready.clear();
  };
  return Tensor::view_of(s, is_bias ? Shape{3 * out} : Shape{in, 3 * out});
}

}  // namespace

void write_alpa_folder(const OptTensors& m, const std::string& outdir) {
  AtomicDir dir(outdir);
  for (const auto& [name, t] : m.tensors) save_npy(dir.path(alpa_file_name(name)), t);
  dir.commit();
}

void write_alpa_tree(const OptTensors& m, const std::string& outfile) {
  const OptConfig& c = m.config;
  if (c.has_projections() || !c.pre_ln)
    throw Error("alpa's OPT model cannot express this model (post-LN with project_in/project_out, like OPT-350m); "
                "nothing was written", outfile);
  std::vector<std::pair<std::string, Tensor>> tree;
  const std::string T = "params.transformers.";
  tree.emplace_back(T + "embeddings.word_embeddings.embedding", m.get("decoder.embed_tokens.weight"));
  tree.emplace_back(T + "embeddings.position_embeddings.embedding", m.get("decoder.embed_positions.weight"));
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string src = "decoder.layers." + std::to_string(l) + ".";
    const std::string dst = T + "encoder." + std::to_string(l) + ".";
    auto w = [&](const std::string& n) { return m.get(src + n); };
    tree.emplace_back(dst + "attention.self.qkv_combined.kernel",
                      qkv_combined(w("self_attn.q_proj.weight"), w("self_attn.k_proj.weight"), w("self_attn.v_proj.weight")));
    tree.emplace_back(dst + "attention.self.qkv_combined.bias",
                      qkv_combined(w("self_attn.q_proj.bias"), w("self_attn.k_proj.bias"), w("self_attn.v_proj.bias")));
    tree.emplace_back(dst + "attention.dense.kernel", compact(transpose2d(w("self_attn.out_proj.weight"))));
    tree.emplace_back(dst + "attention.dense.bias", w("self_attn.out_proj.bias"));
    tree.emplace_back(dst + "attention.layer_norm.scale", w("self_attn_layer_norm.weight"));
    tree.emplace_back(dst + "attention.layer_norm.bias", w("self_attn_layer_norm.bias"));
    tree.emplace_back(dst + "ffn.fc1.kernel", compact(transpose2d(w("fc1.weight"))));
    tree.emplace_back(dst + "ffn.fc1.bias", w("fc1.bias"));
    tree.emplace_back(dst + "ffn.fc2.kernel", compact(transpose2d(w("fc2.weight"))));
    tree.emplace_back(dst + "ffn.fc2.bias", w("fc2.bias"));
    tree.emplace_back(dst + "ffn.layer_norm.scale", w("final_layer_norm.weight"));
    tree.emplace_back(dst + "ffn.layer_norm.bias", w("final_layer_norm.bias"));
  }
  tree.emplace_back(T + "layer_norm.scale", m.get("decoder.layer_norm.weight"));
  tree.emplace_back(T + "layer_norm.bias", m.get("decoder.layer_norm.bias"));
  save_npz(outfile, tree);
}

}  // namespace optforge
