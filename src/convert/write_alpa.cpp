// alpa's two layouts (docs/spec-checkpoints.md §alpa layouts): the numpy folder its serving loads
// from disk, and the parameter tree its OPT model builds from that folder (load_params_np).
#include <cstring>
#include <filesystem>

#include "convert/model_writers.h"
#include "formats/npy.h"
#include "io/atomic_dir.h"
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

// alpa's files hold tensors only and its model (opt_model.py) assumes the released switches; a
// model that needs another one cannot be written without changing what it computes.
void check_alpa_can_express(const OptConfig& c, const std::string& out) {
  if (c.plain()) return;
  std::string why;
  if (c.activation != Activation::Relu) why = std::string("activation_function ") + hf_activation_name(c.activation);
  OptConfig released = c;  // the same shape with the released switches
  released.activation = Activation::Relu;
  released.enable_bias = released.ln_affine = true;
  released.remove_final_norm = false;
  for (const ParamSpec& p : layout_params(released, Layout::AlpaFile))
    if (const char* unmet = unmet_need(role_spec(p.ref.role), c); unmet && why.empty()) why = unmet;
  throw Error("alpa's layouts cannot express this model (" + why +
                  "; alpa's files carry no config and its OPT "
                  "model assumes relu, biases, affine layer norms and a final layer norm); nothing was written",
              out);
}

// One tensor of alpa's tree from the model's tensors of the same role.
Tensor alpa_tree_tensor(const OptTensors& m, const RoleSpec& r, int64_t layer) {
  auto get = [&](Role role) { return *m.find(role, layer); };
  if (r.role == Role::QkvWeight) return qkv_combined(get(Role::QWeight), get(Role::KWeight), get(Role::VWeight));
  if (r.role == Role::QkvBias) return qkv_combined(get(Role::QBias), get(Role::KBias), get(Role::VBias));
  if (r.is_matmul()) return compact(transpose2d(get(r.role)));  // flax Dense kernels are [in, out]
  return get(r.role);
}

}  // namespace

void write_alpa_folder(const OptTensors& m, const std::string& outdir) {
  check_alpa_can_express(m.config, outdir);
  note_token_ids_not_kept(m.config, "alpa folders");
  AtomicDir dir(outdir);
  for (size_t i = 0; i < m.tensors.size(); ++i) save_npy(dir.path(m.name_in(i, Layout::AlpaFile)), m.tensors[i].second);
  dir.commit();
}

void write_alpa_tree(const OptTensors& m, const std::string& outfile) {
  const OptConfig& c = m.config;
  if (c.has_projections() || !c.pre_ln)
    throw Error(std::string("alpa's OPT model cannot express this model (") + (c.pre_ln ? "" : "post-LN") +
                    (c.pre_ln || !c.has_projections() ? "" : ", ") +
                    (c.has_projections() ? "project_in/project_out" : "") +
                    "; alpa's tree has pre-LN blocks without projections); nothing was written",
                outfile);
  check_alpa_can_express(c, outfile);
  std::vector<std::pair<std::string, Tensor>> tree;
  for (const ParamSpec& p : layout_params(c, Layout::AlpaTree))
    tree.emplace_back(p.name, alpa_tree_tensor(m, role_spec(p.ref.role), p.ref.layer));
  save_npz(outfile, tree);
}

}  // namespace optforge
