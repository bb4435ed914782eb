#include "pickle/value_json.h"

#include <cmath>

#include "pickle/pickler.h"
#include "util/error.h"

namespace optforge {

using json = nlohmann::ordered_json;
using Kind = Value::Kind;

namespace {

std::string key_string(const ValuePtr& k) {
  switch (k->kind) {
    case Kind::Str: return k->s;
    case Kind::Int: return std::to_string(k->i);
    case Kind::Bool: return k->b ? "True" : "False";
    case Kind::None: return "None";
    default: return value_to_short_string(k, 60);
  }
}

json to_json(const ValuePtr& v, int depth) {
  if (depth > 2000) throw Error("value nested too deep for JSON");
  if (!v) return nullptr;
  switch (v->kind) {
    case Kind::None: return nullptr;
    case Kind::Bool: return v->b;
    case Kind::Int: return v->i;
    case Kind::Float: return std::isfinite(v->f) ? json(v->f) : json(std::to_string(v->f));
    case Kind::Str: return v->s;
    case Kind::Bytes: return json{{"bytes", v->s.size()}};
    case Kind::List:
    case Kind::Tuple:
    case Kind::Set: {
      json a = json::array();
      for (const auto& x : v->items) a.push_back(to_json(x, depth + 1));
      return a;
    }
    case Kind::Dict: {
      json o = json::object();
      for (const auto& [k, x] : v->entries) o[key_string(k)] = to_json(x, depth + 1);
      return o;
    }
    case Kind::Tensor: {
      const Tensor& t = *v->tensor;
      return json{{"tensor", {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}}}};
    }
    case Kind::Object: {
      ValuePtr p = plain_data(v);
      if (p->kind == Kind::Object) return to_json(p->state, depth + 1);  // Namespace: its fields
      return to_json(p, depth + 1);
    }
    case Kind::Global: return v->s;
  }
  return nullptr;
}

}  // namespace

json value_to_json(const ValuePtr& v) { return to_json(v, 0); }

std::string value_to_short_string(const ValuePtr& v, size_t max_chars) {
  std::string s;
  if (!v) return "None";
  switch (v->kind) {
    case Kind::Tensor:
      s = "tensor(" + std::string(dtype_name(v->tensor->dtype)) + ", " + v->tensor->shape_string() + ")";
      break;
    case Kind::Dict: s = v->type_name() + "[" + std::to_string(v->entries.size()) + " keys]"; break;
    case Kind::List:
    case Kind::Tuple:
    case Kind::Set: {
      if (v->items.size() <= 8) {
        s = v->kind == Kind::Tuple ? "(" : "[";
        for (size_t i = 0; i < v->items.size(); ++i)
          s += (i ? ", " : "") + value_to_short_string(v->items[i], max_chars);
        s += v->kind == Kind::Tuple ? ")" : "]";
      } else {
        s = std::string(kind_name(v->kind)) + "[" + std::to_string(v->items.size()) + "]";
      }
      break;
    }
    case Kind::Object: s = v->s + "(...)"; break;
    case Kind::Str: s = "'" + v->s + "'"; break;
    default: s = to_json(v, 0).dump(); break;
  }
  if (s.size() > max_chars) s = s.substr(0, max_chars - 3) + "...";
  return s;
}

}  // namespace optforge
