#include "opt/roles.h"

#include <algorithm>
#include <cstring>

namespace optforge {
namespace {

using enum Role;
using enum Scope;
using enum Kind;
using enum TpSplit;
using enum Dim;
using enum QkvForm;

constexpr uint8_t kFinalAffine = kFinalNorm | kAffine;

// clang-format off
constexpr std::array<RoleSpec, kRoleCount> kRoles = {{
//  role            id                  scope  metaseq                           hf                                       alpa_file                        alpa_tree                                             rows    cols  split       fsdp needs          qkv       kind
  {TokenEmbed,      "token embedding",  Model, "decoder.embed_tokens.weight",    "model.decoder.embed_tokens.weight",     "decoder.embed_tokens.weight",   "params.transformers.embeddings.word_embeddings.embedding", V, Ein, Vocab,       0, kAlways,       Any,      Embedding},
  {ProjectIn,       "project in",       Model, "decoder.project_in_dim.weight",  "model.decoder.project_in.weight",       "decoder.project_in.weight",     nullptr,                                              E,      Ein,  Replicated,  1, kProjections,  Any,      Matrix},
  {Positions,       "positions",        Model, "decoder.embed_positions.weight", "model.decoder.embed_positions.weight",  "decoder.embed_positions.weight","params.transformers.embeddings.position_embeddings.embedding", PosRows, E, Replicated, 2, kAlways, Any, Embedding},
  {KWeight,         "k weight",         Layer, "self_attn.k_proj.weight",        "self_attn.k_proj.weight",               "self_attn.k_proj.weight",       nullptr,                                              E,      E,    Column,      0, kAlways,       Separate, Matrix},
  {VWeight,         "v weight",         Layer, "self_attn.v_proj.weight",        "self_attn.v_proj.weight",               "self_attn.v_proj.weight",       nullptr,                                              E,      E,    Column,      2, kAlways,       Separate, Matrix},
  {QWeight,         "q weight",         Layer, "self_attn.q_proj.weight",        "self_attn.q_proj.weight",               "self_attn.q_proj.weight",       nullptr,                                              E,      E,    Column,      4, kAlways,       Separate, Matrix},
  {KBias,           "k bias",           Layer, "self_attn.k_proj.bias",          "self_attn.k_proj.bias",                 "self_attn.k_proj.bias",         nullptr,                                              E,      None, Column,      1, kBias,         Separate, Bias},
  {VBias,           "v bias",           Layer, "self_attn.v_proj.bias",          "self_attn.v_proj.bias",                 "self_attn.v_proj.bias",         nullptr,                                              E,      None, Column,      3, kBias,         Separate, Bias},
  {QBias,           "q bias",           Layer, "self_attn.q_proj.bias",          "self_attn.q_proj.bias",                 "self_attn.q_proj.bias",         nullptr,                                              E,      None, Column,      5, kBias,         Separate, Bias},
  {QkvWeight,       "qkv weight",       Layer, "self_attn.qkv_proj.weight",      nullptr,                                 nullptr,                         "attention.self.qkv_combined.kernel",                 E3,     E,    FusedColumn, 0, kAlways,       Fused,    Matrix},
  {QkvBias,         "qkv bias",         Layer, "self_attn.qkv_proj.bias",        nullptr,                                 nullptr,                         "attention.self.qkv_combined.bias",                   E3,     None, FusedColumn, 1, kBias,         Fused,    Bias},
  {OutWeight,       "out_proj weight",  Layer, "self_attn.out_proj.weight",      "self_attn.out_proj.weight",             "self_attn.out_proj.weight",     "attention.dense.kernel",                             E,      E,    Row,         6, kAlways,       Any,      Matrix},
  {OutBias,         "out_proj bias",    Layer, "self_attn.out_proj.bias",        "self_attn.out_proj.bias",               "self_attn.out_proj.bias",       "attention.dense.bias",                               E,      None, Replicated,  7, kBias,         Any,      Bias},
  {AttnNormWeight,  "attn norm weight", Layer, "self_attn_layer_norm.weight",    "self_attn_layer_norm.weight",           "self_attn_layer_norm.weight",   "attention.layer_norm.scale",                         E,      None, Replicated,  8, kAffine,       Any,      NormWeight},
  {AttnNormBias,    "attn norm bias",   Layer, "self_attn_layer_norm.bias",      "self_attn_layer_norm.bias",             "self_attn_layer_norm.bias",     "attention.layer_norm.bias",                          E,      None, Replicated,  9, kAffine,       Any,      NormBias},
  {Fc1Weight,       "fc1 weight",       Layer, "fc1.weight",                     "fc1.weight",                            "fc1.weight",                    "ffn.fc1.kernel",                                     F,      E,    Column,     10, kAlways,       Any,      Matrix},
  {Fc1Bias,         "fc1 bias",         Layer, "fc1.bias",                       "fc1.bias",                              "fc1.bias",                      "ffn.fc1.bias",                                       F,      None, Column,     11, kBias,         Any,      Bias},
  {Fc2Weight,       "fc2 weight",       Layer, "fc2.weight",                     "fc2.weight",                            "fc2.weight",                    "ffn.fc2.kernel",                                     E,      F,    Row,        12, kAlways,       Any,      Matrix},
  {Fc2Bias,         "fc2 bias",         Layer, "fc2.bias",                       "fc2.bias",                              "fc2.bias",                      "ffn.fc2.bias",                                       E,      None, Replicated, 13, kBias,         Any,      Bias},
  {FfnNormWeight,   "ffn norm weight",  Layer, "final_layer_norm.weight",        "final_layer_norm.weight",               "final_layer_norm.weight",       "ffn.layer_norm.scale",                               E,      None, Replicated, 14, kAffine,       Any,      NormWeight},
  {FfnNormBias,     "ffn norm bias",    Layer, "final_layer_norm.bias",          "final_layer_norm.bias",                 "final_layer_norm.bias",         "ffn.layer_norm.bias",                                E,      None, Replicated, 15, kAffine,       Any,      NormBias},
  {FinalNormWeight, "final norm weight",Model, "decoder.layer_norm.weight",      "model.decoder.final_layer_norm.weight", "decoder.layer_norm.weight",     "params.transformers.layer_norm.scale",               E,      None, Replicated,  3, kFinalAffine,  Any,      NormWeight},
  {FinalNormBias,   "final norm bias",  Model, "decoder.layer_norm.bias",        "model.decoder.final_layer_norm.bias",   "decoder.layer_norm.bias",       "params.transformers.layer_norm.bias",                E,      None, Replicated,  4, kFinalAffine,  Any,      NormBias},
  {ProjectOut,      "project out",      Model, "decoder.project_out_dim.weight", "model.decoder.project_out.weight",      "decoder.project_out.weight",    nullptr,                                              Ein,    E,    Replicated,  5, kProjections,  Any,      Matrix},
  {LmHead,          "lm head",          Model, "decoder.output_projection.weight", "lm_head.weight",                      nullptr,                         nullptr,                                              V,      Ein,  Vocab,      -1, kTied,         Any,      Matrix},
}};
// clang-format on

constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < kRoles.size(); ++i)
    if (size_t(kRoles[i].role) != i) return false;
  return true;
}
static_assert(table_in_enum_order(), "kRoles must list the roles in enum order");

const char* column(const RoleSpec& r, Layout l) {
  switch (l) {
    case Layout::Metaseq:
    case Layout::MetaseqFused: return r.metaseq;
    case Layout::Hf: return r.hf;
    case Layout::AlpaFile: return r.alpa_file;
    case Layout::AlpaTree: return r.alpa_tree;
  }
  return nullptr;
}

bool fused_layout(Layout l) { return l == Layout::MetaseqFused || l == Layout::AlpaTree; }

int64_t dim_size(Dim d, const OptConfig& c) {
  switch (d) {
    case Dim::None: return 0;
    case Dim::V: return c.vocab;
    case Dim::Ein: return c.input_dim;
    case Dim::E: return c.embed_dim;
    case Dim::F: return c.ffn_dim;
    case Dim::PosRows: return c.position_rows();
    case Dim::E3: return 3 * c.embed_dim;
  }
  return 0;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// The last two dotted components of a name ("module.param").
std::string module_param(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return name;
  const auto dot2 = name.rfind('.', dot - 1);
  return dot2 == std::string::npos ? name : name.substr(dot2 + 1);
}

}  // namespace

const RoleSpec& role_spec(Role r) { return kRoles[size_t(r)]; }

namespace {
// Each Need bit: the switch it depends on, and what to say when it is unmet / met. In checking
// order: the first unmet one is the reason given.
struct NeedRule {
  Need bit;
  bool (*met)(const OptConfig&);
  const char *unmet_text, *met_text;
};
constexpr NeedRule kNeedRules[] = {
    {kProjections, [](const OptConfig& c) { return c.has_projections(); },
     "word_embed_proj_dim equals hidden_size: no projections", " (word_embed_proj_dim differs from hidden_size)"},
    {kBias, [](const OptConfig& c) { return c.enable_bias; }, "enable_bias is false", " (the config says enable_bias)"},
    {kAffine, [](const OptConfig& c) { return c.ln_affine; }, "layer_norm_elementwise_affine is false",
     " (the config says layer_norm_elementwise_affine)"},
    {kFinalNorm, [](const OptConfig& c) { return c.has_final_norm(); },
     "the config has no final layer norm (post-LN, or _remove_final_layer_norm)",
     " (the config says pre-LN with a final layer norm)"},
    {kTied, [](const OptConfig&) { return false; }, "tied to the token embedding: never stored apart", ""},
};
}  // namespace

const char* unmet_need(const RoleSpec& r, const OptConfig& c) {
  for (const NeedRule& n : kNeedRules)
    if ((r.needs & n.bit) && !n.met(c)) return n.unmet_text;
  return nullptr;
}

const char* met_need(const RoleSpec& r, const OptConfig& c) {
  const char* text = "";
  for (const NeedRule& n : kNeedRules)  // the last (most specific) one that holds
    if ((r.needs & n.bit) && n.met(c)) text = n.met_text;
  return text;
}

bool role_stored(const RoleSpec& r, const OptConfig& c, Layout layout) {
  if (!column(r, layout)) return false;
  if (r.qkv != QkvForm::Any && (r.qkv == QkvForm::Fused) != fused_layout(layout)) return false;
  return unmet_need(r, c) == nullptr;
}

namespace {
constexpr size_t first_layer_record() {
  for (size_t i = 0; i < kRoles.size(); ++i)
    if (kRoles[i].scope == Scope::Layer) return i;
  return kRoles.size();
}
constexpr bool layer_records_contiguous() {
  bool seen = false, ended = false;
  for (const RoleSpec& r : kRoles) {
    if (r.scope == Scope::Layer && ended) return false;
    if (r.scope == Scope::Layer) seen = true;
    if (r.scope == Scope::Model && seen) ended = true;
  }
  return true;
}
static_assert(layer_records_contiguous(), "kRoles must list the layer roles as one block (restored.pt order)");
}  // namespace

Place role_place(Role r) {
  if (role_spec(r).scope == Scope::Layer) return Place::InLayer;
  return size_t(r) < first_layer_record() ? Place::BeforeLayers : Place::AfterLayers;
}

Shape role_shape(const RoleSpec& r, const OptConfig& c, int64_t parts) {
  Shape s = {dim_size(r.rows, c)};
  if (r.cols != Dim::None) s.push_back(dim_size(r.cols, c));
  if (parts > 1) {
    if (r.split == TpSplit::Vocab || r.split == TpSplit::Column || r.split == TpSplit::FusedColumn) s[0] /= parts;
    if (r.split == TpSplit::Row) s[1] /= parts;
  }
  return s;
}

std::string layer_prefix(Layout layout, int64_t layer) {
  const std::string l = std::to_string(layer) + ".";
  switch (layout) {
    case Layout::Hf: return "model.decoder.layers." + l;
    case Layout::AlpaTree: return "params.transformers.encoder." + l;
    default: return "decoder.layers." + l;
  }
}

std::string role_name(const RoleSpec& r, Layout layout, int64_t layer) {
  const char* n = column(r, layout);
  if (!n) return "";
  return r.scope == Scope::Layer ? layer_prefix(layout, layer) + n : std::string(n);
}

std::optional<int64_t> layer_of(Layout layout, const std::string& name) {
  const std::string pre = layer_prefix(layout, 0);
  const std::string stem = pre.substr(0, pre.size() - 2);  // "decoder.layers."
  if (!starts_with(name, stem)) return std::nullopt;
  size_t i = stem.size(), j = i;
  while (j < name.size() && name[j] >= '0' && name[j] <= '9') ++j;
  if (j == i || j - i > 9 || j >= name.size() || name[j] != '.') return std::nullopt;
  return std::stoll(name.substr(i, j - i));
}

std::optional<RoleRef> parse_role_name(Layout layout, const std::string& name) {
  if (auto layer = layer_of(layout, name)) {
    const std::string rest = name.substr(layer_prefix(layout, *layer).size());
    for (const RoleSpec& r : kRoles)
      if (r.scope == Scope::Layer && column(r, layout) && rest == column(r, layout)) return RoleRef{r.role, *layer};
    return std::nullopt;
  }
  for (const RoleSpec& r : kRoles)
    if (r.scope == Scope::Model && column(r, layout) && name == column(r, layout)) return RoleRef{r.role, -1};
  return std::nullopt;
}

const RoleSpec* role_by_module(const std::string& name) {
  const std::string mp = module_param(name);
  for (const RoleSpec& r : kRoles)
    if (module_param(r.metaseq) == mp) return &r;
  return nullptr;
}

std::array<Role, 3> kvq_roles(Role fused) {
  if (fused == Role::QkvBias) return {Role::KBias, Role::VBias, Role::QBias};
  return {Role::KWeight, Role::VWeight, Role::QWeight};
}

std::optional<RoleRef> parse_any_role_name(const std::string& name) {
  for (Layout l : {Layout::Hf, Layout::Metaseq, Layout::AlpaFile})
    if (auto ref = parse_role_name(l, name)) return ref;
  if (!starts_with(name, "decoder.")) return std::nullopt;
  return parse_role_name(Layout::Hf, "model." + name);  // HF names saved from OPTModel
}

std::vector<ParamSpec> layout_params(const OptConfig& c, Layout layout) {
  std::vector<ParamSpec> out;
  auto add = [&](const RoleSpec& r, int64_t layer) {
    if (role_stored(r, c, layout)) out.push_back({role_name(r, layout, layer), role_shape(r, c), {r.role, layer}});
  };
  for (const RoleSpec& r : kRoles)
    if (role_place(r.role) == Place::BeforeLayers) add(r, -1);
  for (int64_t l = 0; l < c.layers; ++l)
    for (const RoleSpec& r : kRoles)
      if (r.scope == Scope::Layer) add(r, l);
  for (const RoleSpec& r : kRoles)
    if (role_place(r.role) == Place::AfterLayers) add(r, -1);
  return out;
}

std::vector<const RoleSpec*> fsdp_roles(Scope scope, const OptConfig& c, bool fused_qkv) {
  std::vector<const RoleSpec*> out;
  const Layout l = fused_qkv ? Layout::MetaseqFused : Layout::Metaseq;
  for (const RoleSpec& r : kRoles)
    if (r.scope == scope && r.fsdp_order >= 0 && role_stored(r, c, l)) out.push_back(&r);
  std::stable_sort(out.begin(), out.end(),
                   [](const RoleSpec* a, const RoleSpec* b) { return a->fsdp_order < b->fsdp_order; });
  return out;
}

}  // namespace optforge
