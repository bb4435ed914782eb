#include "pickle/value.h"

namespace optforge {

namespace {
ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}
}  // namespace

Value::~Value() {
  std::vector<ValuePtr> pending;
  auto take = [&pending](Value& v) {
    for (auto& c : v.items)
      if (c && c.use_count() == 1) pending.push_back(std::move(c));
    for (auto& [k, c] : v.entries) {
      if (k && k.use_count() == 1) pending.push_back(std::move(k));
      if (c && c.use_count() == 1) pending.push_back(std::move(c));
    }
    if (v.state && v.state.use_count() == 1) pending.push_back(std::move(v.state));
  };
  take(*this);
  while (!pending.empty()) {
    ValuePtr p = std::move(pending.back());
    pending.pop_back();
    take(*p);  // p's own destructor then finds nothing left to recurse into
  }
}

ValuePtr Value::none() { return make(Kind::None); }
ValuePtr Value::boolean(bool x) {
  auto v = make(Kind::Bool);
  v->b = x;
  return v;
}
ValuePtr Value::integer(int64_t x) {
  auto v = make(Kind::Int);
  v->i = x;
  return v;
}
ValuePtr Value::real(double x) {
  auto v = make(Kind::Float);
  v->f = x;
  return v;
}
ValuePtr Value::str(std::string x) {
  auto v = make(Kind::Str);
  v->s = std::move(x);
  return v;
}
ValuePtr Value::bytes(std::string x) {
  auto v = make(Kind::Bytes);
  v->s = std::move(x);
  return v;
}
ValuePtr Value::list(std::vector<ValuePtr> x) {
  auto v = make(Kind::List);
  v->items = std::move(x);
  return v;
}
ValuePtr Value::tuple(std::vector<ValuePtr> x) {
  auto v = make(Kind::Tuple);
  v->items = std::move(x);
  return v;
}
ValuePtr Value::dict(bool ordered) {
  auto v = make(Kind::Dict);
  v->ordered = ordered;
  return v;
}
ValuePtr Value::global(std::string name) {
  auto v = make(Kind::Global);
  v->s = std::move(name);
  return v;
}

ValuePtr Value::object(std::string cls, std::vector<ValuePtr> args, ValuePtr state) {
  auto v = make(Kind::Object);
  v->s = std::move(cls);
  v->items = std::move(args);
  v->state = std::move(state);
  return v;
}

ValuePtr Value::of_tensor(Tensor t) {
  auto v = make(Kind::Tensor);
  v->tensor = std::make_shared<Tensor>(std::move(t));
  return v;
}

ValuePtr Value::get(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k && k->kind == Kind::Str && k->s == key) return v;
  return nullptr;
}

void Value::set(const std::string& key, ValuePtr v) { set_item(str(key), std::move(v)); }

void Value::set_item(ValuePtr key, ValuePtr v) {
  const bool is_str = key && key->kind == Kind::Str;
  for (auto& [k, old] : entries)
    if (k == key || (is_str && k && k->kind == Kind::Str && k->s == key->s)) {
      old = std::move(v);
      return;
    }
  entries.emplace_back(std::move(key), std::move(v));
}

void Value::update(const Value& other) {
  const auto added = other.entries;  // a copy: `other` may be this dict, whose vector grows
  for (const auto& [k, v] : added) set_item(k, v);
}

bool Value::erase(const std::string& key) {
  for (auto it = entries.begin(); it != entries.end(); ++it)
    if (it->first && it->first->kind == Kind::Str && it->first->s == key) {
      entries.erase(it);
      return true;
    }
  return false;
}

ValuePtr Value::attr(const std::string& key) const {
  if (kind == Kind::Dict) return get(key);
  if (kind == Kind::Object && state) {
    if (auto v = state->get(key)) return v;
    // omegaconf DictConfig keeps its items under '_content' as nodes holding '_val'.
    if (auto content = state->get("_content")) {
      auto node = content->attr(key);
      if (node && node->kind == Kind::Object && node->state)
        if (auto val = node->state->get("_val")) return val;
      return node;
    }
  }
  return nullptr;
}

namespace {
ValuePtr map_at(const ValuePtr& v, const std::function<Tensor(const Tensor&)>& fn, int depth) {
  if (!v || depth > 2000) return v;
  switch (v->kind) {
    case Value::Kind::Tensor: return Value::of_tensor(fn(*v->tensor));
    case Value::Kind::Dict: {
      auto d = Value::dict(v->ordered);
      d->state = v->state;
      for (const auto& [k, x] : v->entries) d->entries.emplace_back(k, map_at(x, fn, depth + 1));
      return d;
    }
    case Value::Kind::List:
    case Value::Kind::Tuple:
    case Value::Kind::Set: {
      auto l = Value::list();
      l->kind = v->kind;
      for (const auto& x : v->items) l->items.push_back(map_at(x, fn, depth + 1));
      return l;
    }
    case Value::Kind::Object: {
      std::vector<ValuePtr> args;
      for (const auto& x : v->items) args.push_back(map_at(x, fn, depth + 1));
      return Value::object(v->s, std::move(args), map_at(v->state, fn, depth + 1));
    }
    default: return v;
  }
}
}  // namespace

ValuePtr map_tensors(const ValuePtr& root, const std::function<Tensor(const Tensor&)>& fn) {
  return map_at(root, fn, 0);
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::Str: return "str";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::List: return "list";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Set: return "set";
    case Value::Kind::Object: return "object";
    case Value::Kind::Global: return "global";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

std::string Value::type_name() const {
  if (kind == Kind::Object || kind == Kind::Global) return s;
  if (kind == Kind::Dict && ordered) return "OrderedDict";
  return kind_name(kind);
}

}  // namespace optforge
