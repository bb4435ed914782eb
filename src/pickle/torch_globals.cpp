#include "pickle/torch_globals.h"

#include <set>

#include "util/error.h"

namespace optforge::torch_globals {
namespace {

using Kind = Value::Kind;

// torch.load(weights_only=True) accepts these (torch/_weights_only_unpickler.py), ...
const std::set<std::string> kTorch = {
    "collections.OrderedDict",
    "collections.defaultdict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.nn.parameter.Parameter",
    "torch.Tensor",
    "torch.Size",
    "torch.device",
    "torch.serialization._get_layout",
    "torch.strided",
    "_codecs.encode",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
};
// ... plus classes real metaseq files hold, as inert records (docs/spec-checkpoints.md §Container and pickled classes).
const std::set<std::string> kMetaseq = {
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "typing.Any",
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.object",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.bool",
    "copyreg._reconstructor",
    "numpy.core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
};

bool is_storage_class(const std::string& q) {
  return q.rfind("torch.", 0) == 0 && q.size() > 13 && q.compare(q.size() - 7, 7, "Storage") == 0;
}
bool is_torch_dtype(const std::string& q) {
  static const std::set<std::string> k = {"torch.float64", "torch.float32", "torch.float16",   "torch.bfloat16",
                                          "torch.int64",   "torch.int32",   "torch.int16",     "torch.int8",
                                          "torch.uint8",   "torch.bool",    "torch.complex64", "torch.complex128",
                                          "torch.float",   "torch.half",    "torch.double",    "torch.long"};
  return k.count(q) > 0;
}

int64_t as_int(const ValuePtr& v, const char* what) {
  if (!v || v->kind != Kind::Int)
    throw Error(std::string(what) + " must be an int, found " + (v ? v->type_name() : "nothing"));
  return v->i;
}

Shape as_shape(const ValuePtr& v, const char* what) {
  if (!v || !v->is_sequence())
    throw Error(std::string(what) + " must be a tuple, found " + (v ? v->type_name() : "nothing"));
  Shape s;
  for (const auto& x : v->items) s.push_back(as_int(x, what));
  return s;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
ValuePtr rebuild_tensor(const std::vector<ValuePtr>& a, bool v2) {
  if (a.size() < 4 || (v2 && a.size() < 6))
    throw Error("tensor rebuild takes " + std::string(v2 ? "6 or 7" : "4") + " arguments, found " +
                std::to_string(a.size()));
  if (a[0]->kind != Kind::Tensor || !a[0]->tensor->storage)
    throw Error("tensor rebuild: first argument must be a storage, found " + a[0]->type_name());
  Tensor t;
  t.storage = a[0]->tensor->storage;
  t.dtype = t.storage->dtype;
  t.offset = as_int(a[1], "storage offset");
  t.shape = as_shape(a[2], "tensor size");
  t.strides = as_shape(a[3], "tensor stride");
  if (v2 && a[4]->kind == Kind::Bool) t.requires_grad = a[4]->b;
  t.check_bounds();
  return Value::of_tensor(std::move(t));
}

}  // namespace

bool allowed(const std::string& q) {
  if (kTorch.count(q) || kMetaseq.count(q) || is_storage_class(q) || is_torch_dtype(q)) return true;
  return q.rfind("omegaconf.nodes.", 0) == 0;
}

ValuePtr storage_value(std::shared_ptr<Storage> storage) {
  Tensor t;
  t.dtype = storage->dtype;
  t.shape = {int64_t(storage->numel())};
  t.strides = {1};
  t.storage = std::move(storage);
  return Value::of_tensor(std::move(t));
}

ValuePtr call(const std::string& fn, const std::vector<ValuePtr>& a) {
  if (fn == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(a, true);
  if (fn == "torch._utils._rebuild_tensor") return rebuild_tensor(a, false);
  if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || a[0]->kind != Kind::Tensor) throw Error("_rebuild_parameter needs a tensor");
    return a[0];
  }
  if (fn == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
    if (a.size() < 3 || a[0]->kind != Kind::Global || a[2]->kind != Kind::Tuple)
      throw Error("_rebuild_from_type_v2 takes (func, type, args, state)");
    return call(a[0]->s, a[2]->items);
  }
  if (fn == "collections.OrderedDict") {
    auto d = Value::dict(true);
    if (!a.empty() && a[0]->is_sequence())  // OrderedDict([(k, v), ...])
      for (const auto& kv : a[0]->items)
        if (kv->is_sequence() && kv->items.size() == 2) d->entries.emplace_back(kv->items[0], kv->items[1]);
    return d;
  }
  if (fn == "collections.defaultdict") return Value::dict();  // the default factory is irrelevant to data
  if (fn == "torch.Size" || fn == "builtins.tuple") {
    if (a.empty()) return Value::tuple();
    if (!a[0]->is_sequence()) throw Error(fn + " takes a sequence");
    return Value::tuple(a[0]->items);
  }
  if (fn == "builtins.list")
    return Value::list(a.empty() || !a[0]->is_sequence() ? std::vector<ValuePtr>{} : a[0]->items);
  if (fn == "builtins.set" || fn == "builtins.frozenset") {
    auto s = Value::list(a.empty() || !a[0]->is_sequence() ? std::vector<ValuePtr>{} : a[0]->items);
    s->kind = Kind::Set;
    return s;
  }
  if (fn == "_codecs.encode") {  // bytes under protocol 2: encode(str, 'latin1')
    if (a.empty() || a[0]->kind != Kind::Str) throw Error("_codecs.encode takes a str");
    // The str holds each byte as one code point U+0000..U+00FF, UTF-8 encoded: decode it.
    const std::string& u = a[0]->s;
    std::string out;
    for (size_t i = 0; i < u.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(u[i]);
      if (c < 0x80) {
        out += char(c);
      } else if ((c & 0xe0) == 0xc0 && i + 1 < u.size()) {
        out += char(((c & 0x1f) << 6) | (static_cast<unsigned char>(u[++i]) & 0x3f));
      } else {
        throw Error("_codecs.encode: character outside latin-1");
      }
    }
    return Value::bytes(out);
  }
  if (fn == "builtins.bytearray") return Value::bytes(a.empty() ? "" : a[0]->s);
  if (fn == "torch.device") return Value::str(a.empty() ? "" : a[0]->s);
  if (fn == "copyreg._reconstructor") {  // (cls, base, state)
    if (a.empty() || a[0]->kind != Kind::Global) throw Error("_reconstructor needs a class");
    return Value::object(a[0]->s);
  }
  // Any other allowed name: an inert record of the call.
  return Value::object(fn, a);
}

ValuePtr construct(const std::string& cls, const std::vector<ValuePtr>& args) {
  if (cls == "collections.OrderedDict") return Value::dict(true);
  if (cls == "builtins.dict") return Value::dict();
  if (cls == "builtins.list") return Value::list();
  if (cls == "builtins.set") {
    auto s = Value::list();
    s->kind = Kind::Set;
    return s;
  }
  return Value::object(cls, args);
}

void build(ValuePtr& target, const ValuePtr& state) {
  switch (target->kind) {
    case Kind::Object:
    case Kind::Dict:  // OrderedDict with attributes (a module state dict's _metadata)
      // A second BUILD merges like Python's obj.__dict__.update(state) (a no-op with its own state).
      if (target->state && target->state->is_dict() && state->is_dict()) {
        target->state->update(*state);
      } else {
        target->state = state;
      }
      // omegaconf nodes point back at their parent: a cycle that carries no data. Cut it.
      if (target->kind == Kind::Object && target->s.rfind("omegaconf.", 0) == 0 && target->state &&
          target->state->is_dict())
        target->state->erase("_parent");
      return;
    case Kind::Tensor:  // tensor / Parameter state: attributes we do not need
      return;
    default: throw Error("BUILD on a " + target->type_name());
  }
}

}  // namespace optforge::torch_globals
