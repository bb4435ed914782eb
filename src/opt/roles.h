// OPT's parameters by ROLE: one table, written as data, that every reader, writer, checkpoint
// surgery and the model loader consult instead of spelling tensor names themselves (the way
// llama.cpp's llama-arch names tensors by role and Megatron's checkpoint tools speak of "qkv
// weight" and "mlp l0 weight").
//
// One record per role, in metaseq singleton (restored.pt) order. Each record gives:
//   - its name in every layout optforge reads or writes (layer roles: the part after the
//     layout's per-layer prefix, see layer_prefix()):
//       metaseq     singleton, FSDP shards and MP parts (FSDP-relative names are the layer part);
//       hf          transformers' OPTForCausalLM state dict;
//       alpa_file   alpa's numpy folder (one np.save file per tensor);
//       alpa_tree   alpa's in-memory parameter tree (dotted .npz paths);
//     nullptr where the layout has no such tensor;
//   - its shape as a function of one OptConfig (rows x cols, cols None for vectors);
//   - its Megatron tensor-parallel split (vocab-, column-, row-parallel, replicated; the fused
//     qkv of metaseq MP parts is column-parallel per K, V, Q block);
//   - its place in the FSDP flat parameter of its instance (root or one per layer);
//   - when it exists (projections, biases, LN affine, final LN: OptConfig switches);
//   - whether the separate q/k/v or the fused qkv form holds it (metaseq MP parts and alpa's tree
//     are fused; every other layout is separate);
//   - its kind; Kind::Matrix marks the matmul weights (what weight quantization and tensor
//     parallelism would act on).
//
// Adding a layout = one name column here + its reader/writer; adding a role = one record here
// (+ its use in the forward pass if it computes something new).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "opt/config.h"
#include "tensor/tensor.h"

namespace optforge {

enum class Role : uint8_t {
  TokenEmbed,
  ProjectIn,
  Positions,
  KWeight,
  VWeight,
  QWeight,
  KBias,
  VBias,
  QBias,
  QkvWeight,
  QkvBias,
  OutWeight,
  OutBias,
  AttnNormWeight,
  AttnNormBias,
  Fc1Weight,
  Fc1Bias,
  Fc2Weight,
  Fc2Bias,
  FfnNormWeight,
  FfnNormBias,
  FinalNormWeight,
  FinalNormBias,
  ProjectOut,
  LmHead,
};
inline constexpr size_t kRoleCount = size_t(Role::LmHead) + 1;

enum class Layout : uint8_t {
  Metaseq,       // singleton / unfused parts: k, v, q separate
  MetaseqFused,  // Megatron MP parts: qkv_proj = [K; V; Q] rows
  Hf,
  AlpaFile,
  AlpaTree,  // fused qkv_combined (alpa's own interleaving), kernels [in, out]
};

enum class Scope : uint8_t { Model, Layer };
enum class Kind : uint8_t { Embedding, Matrix, Bias, NormWeight, NormBias };
enum class TpSplit : uint8_t { Replicated, Vocab, Column, Row, FusedColumn };
enum class Dim : uint8_t { None, V, Ein, E, F, PosRows, E3 };  // PosRows = T + kPositionOffset
enum class QkvForm : uint8_t { Any, Separate, Fused };
// When a role exists (all listed conditions must hold).
enum Need : uint8_t { kAlways = 0, kProjections = 1, kBias = 2, kAffine = 4, kFinalNorm = 8, kTied = 16 };

struct RoleSpec {
  Role role;
  const char* id;  // for messages and docs: "q weight"
  Scope scope;
  const char* metaseq;
  const char* hf;
  const char* alpa_file;
  const char* alpa_tree;
  Dim rows, cols;
  TpSplit split;
  int8_t fsdp_order;  // index within its FSDP instance's flat parameter; -1: not flattened (tied)
  uint8_t needs;      // Need bits; kTied: never stored apart from the token embedding
  QkvForm qkv;
  Kind kind;

  bool is_matmul() const { return kind == Kind::Matrix; }
};

const RoleSpec& role_spec(Role r);

// Why config `c`'s switches leave role `r` out of the model ("enable_bias is false", ...);
// nullptr when they call for it. Layouts (names, q/k/v form) are role_stored's business.
const char* unmet_need(const RoleSpec& r, const OptConfig& c);
// For a role `c` does call for: which switch does ("the config says enable_bias"); "" for roles
// every model has.
const char* met_need(const RoleSpec& r, const OptConfig& c);
// Whether the role is stored in `layout` for a model with config `c`.
bool role_stored(const RoleSpec& r, const OptConfig& c, Layout layout);
// Where a role sits in metaseq singleton (restored.pt) order, i.e. in the table's record order:
// model roles before the layers (embeddings), the layers' roles, model roles after the layers.
enum class Place : uint8_t { BeforeLayers, InLayer, AfterLayers };
Place role_place(Role r);
// Its shape; with `parts` > 1, one Megatron part's (the split dimension divided by parts).
Shape role_shape(const RoleSpec& r, const OptConfig& c, int64_t parts = 1);
// "decoder.layers.3." / "model.decoder.layers.3." / "params.transformers.encoder.3."
std::string layer_prefix(Layout layout, int64_t layer);
// Its full name in `layout` ("" if the layout has none); `layer` is ignored for model roles.
std::string role_name(const RoleSpec& r, Layout layout, int64_t layer = 0);

struct RoleRef {
  Role role;
  int64_t layer = -1;  // -1 for model roles
};
// The role a full name stands for in `layout`; nullopt for names the table does not know.
std::optional<RoleRef> parse_role_name(Layout layout, const std::string& name);
// The role whose metaseq name ends in the same module and parameter as `name` ("qkv_proj.weight",
// "fc2.weight"): what a tensor is, whatever FSDP wrapper or layer prefix surrounds it. nullptr if
// none.
const RoleSpec* role_by_module(const std::string& name);
// The layer number of a name under the layout's layer prefix, whatever follows it.
std::optional<int64_t> layer_of(Layout layout, const std::string& name);
// The separate roles a fused qkv role holds, in metaseq's row order (K, V, Q).
std::array<Role, 3> kvq_roles(Role fused);
// The same for any spelling a state dict may use: HF (with or without "model."), metaseq
// (separate or fused qkv), alpa file names.
std::optional<RoleRef> parse_any_role_name(const std::string& name);

// Every stored tensor of `layout` in table (metaseq singleton) order: layers in order, roles
// in record order within each.
struct ParamSpec {
  std::string name;
  Shape shape;
  RoleRef ref;
};
std::vector<ParamSpec> layout_params(const OptConfig& c, Layout layout);
// The roles of one FSDP instance (model root, or one layer) in flatten order.
std::vector<const RoleSpec*> fsdp_roles(Scope scope, const OptConfig& c, bool fused_qkv);

}  // namespace optforge
