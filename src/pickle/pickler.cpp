#include "pickle/pickler.h"

#include <cstring>
#include <map>

#include "io/byte_io.h"
#include "util/error.h"

namespace optforge {
namespace {

using Kind = Value::Kind;
constexpr int kMaxDepth = 2000;

class Pickler {
 public:
  explicit Pickler(const StorageKeyFor& key_for) : key_for_(key_for) {}
  std::string run(const ValuePtr& root) {
    out_ += "\x80\x02";
    emit(root, 0);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void emit(const ValuePtr& v, int depth);
  void op(char c) { out_ += c; }
  void global(const std::string& module, const std::string& name) {
    std::string key = module + "\n" + name;
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      get(it->second);
      return;
    }
    out_ += 'c';
    out_ += module + "\n" + name + "\n";
    put(key);
  }
  void put(const std::string& key) {
    uint32_t idx = uint32_t(memo_.size());
    memo_[key] = idx;
    if (idx < 256) {
      out_ += 'q';
      out_ += char(idx);
    } else {
      out_ += 'r';
      append_le<uint32_t>(out_, idx);
    }
  }
  void get(uint32_t idx) {
    if (idx < 256) {
      out_ += 'h';
      out_ += char(idx);
    } else {
      out_ += 'j';
      append_le<uint32_t>(out_, idx);
    }
  }
  void integer(int64_t i) {
    if (i >= 0 && i < 256) {
      out_ += 'K';
      out_ += char(i);
    } else if (i >= 0 && i < 65536) {
      out_ += 'M';
      append_le<uint16_t>(out_, uint16_t(i));
    } else if (i >= INT32_MIN && i <= INT32_MAX) {
      out_ += 'J';
      append_le<int32_t>(out_, int32_t(i));
    } else {  // LONG1: minimal two's complement, little-endian
      std::string b;
      uint64_t u = uint64_t(i);
      for (int k = 0; k < 8; ++k) b += char((u >> (8 * k)) & 0xff);
      while (b.size() > 1) {
        uint8_t last = uint8_t(b.back()), prev = uint8_t(b[b.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80)))
          b.pop_back();
        else
          break;
      }
      out_ += '\x8a';
      out_ += char(b.size());
      out_ += b;
    }
  }
  void string(const std::string& s) {
    out_ += 'X';
    append_le<uint32_t>(out_, uint32_t(s.size()));
    out_ += s;
  }
  void tuple_of(const std::vector<ValuePtr>& items, int depth) {
    if (items.empty()) return op(')');
    if (items.size() > 3) op('(');
    for (const auto& i : items) emit(i, depth + 1);
    static const char kTupleN[] = {0, '\x85', '\x86', '\x87'};
    op(items.size() <= 3 ? kTupleN[items.size()] : 't');
  }
  void dict_items(const ValuePtr& v, int depth) {
    for (size_t i = 0; i < v->entries.size(); i += 1000) {
      op('(');
      for (size_t j = i; j < std::min(v->entries.size(), i + 1000); ++j) {
        emit(v->entries[j].first, depth + 1);
        emit(v->entries[j].second, depth + 1);
      }
      op('u');
    }
  }
  void tensor(const Tensor& t) {
    std::string key = key_for_(t);
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    op('(');
    string("storage");
    global("torch", std::string(torch_storage_class(t.dtype)));
    string(key);
    string(t.storage->location.empty() ? "cpu" : t.storage->location);
    integer(int64_t(t.storage->numel()));
    op('t');
    op('Q');
    integer(t.offset);
    std::vector<ValuePtr> size, stride;
    for (auto d : t.shape) size.push_back(Value::integer(d));
    for (auto d : t.strides) stride.push_back(Value::integer(d));
    tuple_of(size, 0);
    tuple_of(stride, 0);
    op(t.requires_grad ? '\x88' : '\x89');
    global("collections", "OrderedDict");
    op(')');
    op('R');
    op('t');
    op('R');
  }

  const StorageKeyFor& key_for_;
  std::string out_;
  std::map<std::string, uint32_t> memo_;
};

void Pickler::emit(const ValuePtr& v, int depth) {
  if (depth > kMaxDepth) throw Error("value nested deeper than " + std::to_string(kMaxDepth) + " levels");
  if (!v) return op('N');
  switch (v->kind) {
    case Kind::None: return op('N');
    case Kind::Bool: return op(v->b ? '\x88' : '\x89');
    case Kind::Int: return integer(v->i);
    case Kind::Float: {
      op('G');
      uint64_t bits;
      std::memcpy(&bits, &v->f, 8);
      for (int k = 7; k >= 0; --k) out_ += char((bits >> (8 * k)) & 0xff);
      return;
    }
    case Kind::Str: return string(v->s);
    case Kind::Bytes: {  // as Python writes bytes under protocol 2: _codecs.encode(str, 'latin1')
      global("_codecs", "encode");
      std::string u;
      for (unsigned char c : v->s) {
        if (c < 0x80) {
          u += char(c);
        } else {
          u += char(0xc0 | (c >> 6));
          u += char(0x80 | (c & 0x3f));
        }
      }
      string(u);
      string("latin1");
      op('\x86');
      return op('R');
    }
    case Kind::List:
      op(']');
      if (!v->items.empty()) {
        op('(');
        for (const auto& i : v->items) emit(i, depth + 1);
        op('e');
      }
      return;
    case Kind::Tuple: return tuple_of(v->items, depth);
    case Kind::Set:
      global("builtins", "set");
      op(']');
      if (!v->items.empty()) {
        op('(');
        for (const auto& i : v->items) emit(i, depth + 1);
        op('e');
      }
      op('\x85');
      return op('R');
    case Kind::Dict:
      if (v->ordered) {
        global("collections", "OrderedDict");
        op(')');
        op('R');
      } else {
        op('}');
      }
      dict_items(v, depth);
      if (v->ordered && v->state && v->state->is_dict() && !v->state->entries.empty()) {
        emit(plain_data(v->state), depth + 1);
        op('b');
      }
      return;
    case Kind::Tensor: return tensor(*v->tensor);
    case Kind::Object:
      if (v->s == "argparse.Namespace") {
        global("argparse", "Namespace");
        op(')');
        op('\x81');
        emit(v->state ? plain_data(v->state) : Value::dict(), depth + 1);
        return op('b');
      }
      return emit(plain_data(v), depth + 1);
    case Kind::Global: return string(v->s);  // a bare class reference: keep its name
  }
}

ValuePtr plain_data_at(const ValuePtr& v, int depth) {
  if (depth > kMaxDepth) throw Error("value nested deeper than " + std::to_string(kMaxDepth) + " levels");
  if (!v) return Value::none();
  auto rec = [depth](const ValuePtr& x) { return plain_data_at(x, depth + 1); };
  switch (v->kind) {
    case Kind::Dict: {
      bool changed = false;
      auto d = Value::dict(v->ordered);
      for (const auto& [k, x] : v->entries) {
        auto y = rec(x);
        changed |= y != x;
        d->entries.emplace_back(k, y);
      }
      if (!changed) return v;
      d->state = v->state;
      return d;
    }
    case Kind::List:
    case Kind::Tuple:
    case Kind::Set: {
      bool changed = false;
      std::vector<ValuePtr> items;
      for (const auto& x : v->items) {
        auto y = rec(x);
        changed |= y != x;
        items.push_back(y);
      }
      if (!changed) return v;
      auto r = Value::list(std::move(items));
      r->kind = v->kind;
      return r;
    }
    case Kind::Object: {
      const std::string& c = v->s;
      if (c == "argparse.Namespace") {
        auto r = Value::object(c, {}, v->state ? rec(v->state) : Value::dict());
        return r;
      }
      const ValuePtr content = v->state ? v->state->get("_content") : nullptr;
      if (c == "omegaconf.dictconfig.DictConfig") {
        auto d = Value::dict();
        if (content && content->is_dict())
          for (const auto& [k, x] : content->entries) d->entries.emplace_back(k, rec(x));
        return d;
      }
      if (c == "omegaconf.listconfig.ListConfig") {
        auto l = Value::list();
        if (content && content->is_sequence())
          for (const auto& x : content->items) l->items.push_back(rec(x));
        return l;
      }
      if (c.rfind("omegaconf.nodes.", 0) == 0) {
        auto val = v->state ? v->state->get("_val") : nullptr;
        return val ? rec(val) : Value::none();
      }
      if (v->state) return rec(v->state);
      return Value::none();
    }
    default: return v;
  }
}

}  // namespace

ValuePtr plain_data(const ValuePtr& v) { return plain_data_at(v, 0); }

std::string pickle_value(const ValuePtr& root, const StorageKeyFor& storage_key) {
  return Pickler(storage_key).run(root);
}

}  // namespace optforge
