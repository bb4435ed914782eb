#include "pickle/unpickler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "io/byte_io.h"
#include "pickle/torch_globals.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace optforge {
namespace {

using Kind = Value::Kind;

class Machine {
 public:
  Machine(std::string_view data, const std::string& file, const std::string& where, const PersistentLoad& pl,
          const UnpickleOptions& opts)
      : d_(reinterpret_cast<const uint8_t*>(data.data())),
        n_(data.size()),
        file_(file),
        where_(where),
        persistent_load_(pl),
        opts_(opts) {}

  ValuePtr run(size_t* end_offset);
  // Empties every container the pickle changed that is still alive and not reachable from `keep`
  // (nullptr after a failure: then every one). A reference cycle keeps itself alive however it
  // was dropped (x.append(x) then POP, a dict key set twice, a failing opcode's locals), and
  // every cycle passes through a changed container, so this frees them all.
  void cut_cycles(const ValuePtr& keep);

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(msg + " (pickle byte offset " + std::to_string(op_pos_) + ")", file_, where_);
  }
  // Runs one torch_globals step, whose errors gain this opcode's offset. Only that step runs
  // inside: the machine's own failures (stack underflow, ...) already carry the offset.
  template <class F>
  auto in_globals(F&& step) {
    try {
      return step();
    } catch (const Error& e) { fail(e.message()); }
  }
  const uint8_t* take(size_t k) {
    if (k > n_ - p_) fail("pickle truncated: needs " + std::to_string(k) + " more bytes");
    const uint8_t* r = d_ + p_;
    p_ += k;
    return r;
  }
  std::string take_string(size_t k) {
    const uint8_t* r = take(k);
    return std::string(reinterpret_cast<const char*>(r), k);
  }
  ValuePtr take_unicode(size_t k) {
    std::string s = take_string(k);
    // Python decodes pickle strings with 'surrogatepass': well-formed UTF-8 where encoded
    // surrogates (ED A0..BF xx) are allowed too. Anything else is an error there and here.
    if (!utf8_valid(s, /*allow_surrogates=*/true)) fail("string is not valid UTF-8");
    return Value::str(std::move(s));
  }
  std::string take_line() {
    size_t start = p_;
    while (p_ < n_ && d_[p_] != '\n') ++p_;
    if (p_ >= n_) fail("pickle truncated: unterminated text argument");
    std::string s(reinterpret_cast<const char*>(d_ + start), p_ - start);
    ++p_;
    return s;
  }
  ValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("pickle MARK expected but none is open");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + long(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  void push(ValuePtr v) {
    if (stack_.size() > (1u << 24)) fail("pickle stack too deep");
    stack_.push_back(std::move(v));
  }
  void memo_put(uint64_t idx) {
    if (stack_.empty()) fail("memo PUT on an empty stack");
    memo_[idx] = stack_.back();
  }
  void memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo GET of unknown index " + std::to_string(idx));
    push(it->second);
  }
  void global(const std::string& module, const std::string& name);
  void append_to(ValuePtr& target, std::vector<ValuePtr> items);
  void set_items(ValuePtr& target, std::vector<ValuePtr> kv);
  ValuePtr int_from_le(const uint8_t* b, size_t k);
  ValuePtr parse_int_text(const std::string& s);

  const uint8_t* d_;
  size_t n_, p_ = 0, op_pos_ = 0;
  const std::string& file_;
  const std::string& where_;
  const PersistentLoad& persistent_load_;
  const UnpickleOptions& opts_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  // Every container APPEND, SETITEM or BUILD changed (noted before the change, so also when it
  // fails): a cycle needs such a change (a node made to point at itself or at a newer node that
  // reaches it), so emptying these breaks every cycle.
  std::vector<std::weak_ptr<Value>> mutated_;
  void note_mutated(const ValuePtr& v) {
    if (mutated_.empty() || mutated_.back().owner_before(v) || v.owner_before(mutated_.back())) mutated_.push_back(v);
  }
};

void Machine::global(const std::string& module_as_written, const std::string& name) {
  // Protocols < 3 write Python 2 module names; Python maps them (_compat_pickle), so do we.
  std::string module = module_as_written == "__builtin__" ? "builtins"
                       : module_as_written == "copy_reg"  ? "copyreg"
                                                          : module_as_written;
  std::string q = module + "." + name;
  if (q == "builtins.long") q = "builtins.int";
  if (q == "builtins.unicode") q = "builtins.str";
  if (!global_allowed(q) && !opts_.allow_unknown_globals)
    fail("refusing to load GLOBAL '" + q +
         "': not on the allowlist (optforge never runs code "
         "from a pickle; only tensors, containers and known inert classes are accepted)");
  push(Value::global(q));
}

void Machine::append_to(ValuePtr& target, std::vector<ValuePtr> items) {
  note_mutated(target);
  if (target->kind == Kind::List || target->kind == Kind::Set) {
    // `items` is our own vector (popped off the stack), never target->items: safe when the
    // target is among the items (list.append(list) makes a cycle: check_tree refuses it if the
    // result reaches it, cut_cycles frees it).
    for (auto& i : items) target->items.push_back(std::move(i));
  } else if (target->kind == Kind::Object) {
    // list subclasses (ListConfig is not one, but be lenient): keep the items as args
    for (auto& i : items) target->items.push_back(std::move(i));
  } else {
    fail(std::string("APPEND to a ") + kind_name(target->kind) + ", expected a list");
  }
}

void Machine::set_items(ValuePtr& target, std::vector<ValuePtr> kv) {
  note_mutated(target);
  if (kv.size() % 2) fail("SETITEMS with an odd number of stack items");
  if (target->kind != Kind::Dict) fail(std::string("SETITEM on a ") + target->type_name() + ", expected a dict");
  for (size_t i = 0; i < kv.size(); i += 2) target->set_item(std::move(kv[i]), std::move(kv[i + 1]));
}

ValuePtr Machine::int_from_le(const uint8_t* b, size_t k) {
  if (k == 0) return Value::integer(0);
  if (k > 8) {
    // Only sign extension bytes may follow 8 significant bytes.
    uint8_t ext = (b[7] & 0x80) ? 0xff : 0x00;
    for (size_t i = 8; i < k; ++i)
      if (b[i] != ext) fail("integer of " + std::to_string(k) + " bytes does not fit in 64 bits");
    k = 8;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < k; ++i) v |= uint64_t(b[i]) << (8 * i);
  if (k < 8 && (b[k - 1] & 0x80)) v |= ~uint64_t(0) << (8 * k);
  return Value::integer(int64_t(v));
}

ValuePtr Machine::parse_int_text(const std::string& s0) {
  std::string s = s0;
  if (!s.empty() && s.back() == 'L') s.pop_back();
  if (s == "00") return Value::boolean(false);
  if (s == "01") return Value::boolean(true);
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used, 10);
    if (used != s.size()) fail("bad integer text '" + s0 + "'");
    return Value::integer(v);
  } catch (const std::exception&) { fail("bad or too large integer text '" + s0 + "'"); }
}

ValuePtr Machine::run(size_t* end_offset) {
  while (true) {
    op_pos_ = p_;
    uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        uint8_t proto = *take(1);
        if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto));
        break;
      }
      case 0x95: take(8); break;  // FRAME: framing is transparent to us
      case '.': {                 // STOP
        if (stack_.size() != 1 || !marks_.empty())
          fail("pickle ended with " + std::to_string(stack_.size()) + " items on the stack, expected 1");
        if (end_offset) *end_offset = p_;
        return stack_.back();
      }
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                            // POP
      case '1': pop_mark(); break;                       // POP_MARK
      case '2': push(top()); break;                      // DUP
      case 'N': push(Value::none()); break;
      case 0x88: push(Value::boolean(true)); break;
      case 0x89: push(Value::boolean(false)); break;
      case 'I': push(parse_int_text(take_line())); break;
      case 'L': push(parse_int_text(take_line())); break;
      case 'J': push(Value::integer(load_le<int32_t>(take(4)))); break;
      case 'K': push(Value::integer(*take(1))); break;
      case 'M': push(Value::integer(load_le<uint16_t>(take(2)))); break;
      case 0x8a: {  // LONG1
        size_t k = *take(1);
        push(int_from_le(take(k), k));
        break;
      }
      case 0x8b: {  // LONG4
        int32_t k = load_le<int32_t>(take(4));
        if (k < 0) fail("negative LONG4 length");
        push(int_from_le(take(size_t(k)), size_t(k)));
        break;
      }
      case 'F': {
        std::string s = take_line();
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str()) fail("bad float text '" + s + "'");
        push(Value::real(v));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const uint8_t* b = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = bits << 8 | b[i];
        double v;
        std::memcpy(&v, &bits, 8);
        push(Value::real(v));
        break;
      }
      case 'X': push(take_unicode(load_le<uint32_t>(take(4)))); break;
      case 0x8c: push(take_unicode(*take(1))); break;
      case 0x8d: {
        uint64_t k = load_le<uint64_t>(take(8));
        if (k > n_) fail("string length " + std::to_string(k) + " exceeds the pickle");
        push(take_unicode(size_t(k)));
        break;
      }
      case 'V': push(Value::str(take_line())); break;  // UNICODE (raw-unicode-escape; ASCII kept)
      case 'S': {                                      // STRING: a quoted Python 2 str repr
        std::string s = take_line();
        if (s.size() < 2 || (s.front() != '\'' && s.front() != '"') || s.back() != s.front())
          fail("bad STRING argument");
        push(Value::bytes(s.substr(1, s.size() - 2)));
        break;
      }
      case 'T': {  // BINSTRING
        int32_t k = load_le<int32_t>(take(4));
        if (k < 0) fail("negative BINSTRING length");
        push(Value::bytes(take_string(size_t(k))));
        break;
      }
      case 'U': push(Value::bytes(take_string(*take(1)))); break;  // SHORT_BINSTRING
      case 'B': push(Value::bytes(take_string(load_le<uint32_t>(take(4))))); break;
      case 'C': push(Value::bytes(take_string(*take(1)))); break;
      case 0x8e:
      case 0x96: {  // BINBYTES8, BYTEARRAY8
        uint64_t k = load_le<uint64_t>(take(8));
        if (k > n_) fail("bytes length " + std::to_string(k) + " exceeds the pickle");
        push(Value::bytes(take_string(size_t(k))));
        break;
      }
      case ']': push(Value::list()); break;
      case 'l': push(Value::list(pop_mark())); break;
      case 'a': {
        ValuePtr v = pop();
        append_to(top(), {std::move(v)});
        break;
      }
      case 'e': {
        auto items = pop_mark();
        append_to(top(), std::move(items));
        break;
      }
      case ')': push(Value::tuple()); break;
      case 't': push(Value::tuple(pop_mark())); break;
      case 0x85: {
        auto a = pop();
        push(Value::tuple({a}));
        break;
      }
      case 0x86: {
        auto b = pop(), a = pop();
        push(Value::tuple({a, b}));
        break;
      }
      case 0x87: {
        auto c = pop(), b = pop(), a = pop();
        push(Value::tuple({a, b, c}));
        break;
      }
      case '}': push(Value::dict()); break;
      case 'd': {
        auto kv = pop_mark();
        auto dct = Value::dict();
        set_items(dct, std::move(kv));
        push(dct);
        break;
      }
      case 's': {
        auto v = pop(), k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {
        auto kv = pop_mark();
        set_items(top(), std::move(kv));
        break;
      }
      case 0x8f: {
        auto s = Value::list();
        s->kind = Kind::Set;
        push(s);
        break;
      }             // EMPTY_SET
      case 0x90: {  // ADDITEMS
        auto items = pop_mark();
        if (top()->kind != Kind::Set) fail("ADDITEMS on a non-set");
        append_to(top(), std::move(items));
        break;
      }
      case 0x91: {
        auto s = Value::list(pop_mark());
        s->kind = Kind::Set;
        push(s);
        break;
      }            // FROZENSET
      case 'c': {  // GLOBAL
        std::string module = take_line(), name = take_line();
        global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop(), module = pop();
        if (module->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL needs two strings");
        global(module->s, name->s);
        break;
      }
      case 'R': {  // REDUCE
        auto args = pop(), fn = pop();
        if (fn->kind != Kind::Global) fail("REDUCE on a " + fn->type_name() + ", expected a class or function");
        if (args->kind != Kind::Tuple) fail("REDUCE arguments are a " + args->type_name() + ", expected a tuple");
        push(in_globals([&] { return torch_globals::call(fn->s, args->items); }));
        break;
      }
      case 0x81: {  // NEWOBJ
        auto args = pop(), cls = pop();
        if (cls->kind != Kind::Global) fail("NEWOBJ on a " + cls->type_name() + ", expected a class");
        push(in_globals([&] {
          return torch_globals::construct(cls->s, args->kind == Kind::Tuple ? args->items : std::vector<ValuePtr>{});
        }));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();      // kwargs
        auto args = pop(), cls = pop();
        if (cls->kind != Kind::Global) fail("NEWOBJ_EX on a " + cls->type_name() + ", expected a class");
        push(in_globals([&] {
          return torch_globals::construct(cls->s, args->kind == Kind::Tuple ? args->items : std::vector<ValuePtr>{});
        }));
        break;
      }
      case 'b': {  // BUILD
        auto state = pop();
        ValuePtr& target = top();
        note_mutated(target);
        in_globals([&] { torch_globals::build(target, state); });
        break;
      }
      case 'p': memo_put(uint64_t(parse_int_text(take_line())->i)); break;
      case 'q': memo_put(*take(1)); break;
      case 'r': memo_put(load_le<uint32_t>(take(4))); break;
      case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
      case 'g': memo_get(uint64_t(parse_int_text(take_line())->i)); break;
      case 'h': memo_get(*take(1)); break;
      case 'j': memo_get(load_le<uint32_t>(take(4))); break;
      case 'Q': {  // BINPERSID
        auto pid = pop();
        if (!persistent_load_) fail("persistent id found but this file has no storages");
        push(persistent_load_(pid));
        break;
      }
      case 'P': {  // PERSID (text)
        auto pid = Value::str(take_line());
        if (!persistent_load_) fail("persistent id found but this file has no storages");
        push(persistent_load_(pid));
        break;
      }
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", op);
        fail(std::string("unsupported or invalid pickle opcode ") + buf);
      }
    }
  }
}

// Every walk over a tree (writers, inspect, JSON) recurses and expands shared nodes. A pickle can
// build a cycle or a DAG that doubles at each level (x = [y, y], y = [z, z], ...), so every tree
// is checked once here: acyclic, at most kMaxDepth deep, at most kMaxExpanded nodes expanded.
constexpr size_t kMaxDepth = 1000;
constexpr uint64_t kMaxExpanded = uint64_t(1) << 26;

const Value* child(const Value* v, size_t i) {
  if (i < v->items.size()) return v->items[i].get();
  i -= v->items.size();
  if (i < 2 * v->entries.size()) return (i % 2 ? v->entries[i / 2].second : v->entries[i / 2].first).get();
  i -= 2 * v->entries.size();
  return i == 0 ? v->state.get() : reinterpret_cast<const Value*>(uintptr_t(1));  // 1: no more
}

void check_tree(const ValuePtr& root, const std::string& file, const std::string& where) {
  struct Node {
    bool done = false;
    uint64_t expanded = 1;
  };
  std::unordered_map<const Value*, Node> seen;
  struct Frame {
    const Value* v;
    size_t next;
  };
  std::vector<Frame> stack{{root.get(), 0}};
  seen[root.get()];
  while (!stack.empty()) {
    Frame& f = stack.back();
    const Value* c = child(f.v, f.next++);
    if (c == reinterpret_cast<const Value*>(uintptr_t(1))) {
      seen[f.v].done = true;
      uint64_t e = seen[f.v].expanded;
      stack.pop_back();
      if (!stack.empty()) {
        Node& parent = seen[stack.back().v];
        parent.expanded = std::min(kMaxExpanded + 1, parent.expanded + e);
        if (parent.expanded > kMaxExpanded)
          throw Error("pickle expands to more than " + std::to_string(kMaxExpanded) + " values (shared references)",
                      file, where);
      }
      continue;
    }
    if (!c) continue;
    auto it = seen.find(c);
    if (it != seen.end()) {
      if (!it->second.done) throw Error("pickle contains a reference cycle", file, where);
      Node& parent = seen[f.v];
      parent.expanded = std::min(kMaxExpanded + 1, parent.expanded + it->second.expanded);
      if (parent.expanded > kMaxExpanded)
        throw Error("pickle expands to more than " + std::to_string(kMaxExpanded) + " values (shared references)", file,
                    where);
      continue;
    }
    if (stack.size() >= kMaxDepth)
      throw Error("pickle nests deeper than " + std::to_string(kMaxDepth) + " levels", file, where);
    seen[c];
    stack.push_back({c, 0});
  }
}

void Machine::cut_cycles(const ValuePtr& keep) {
  std::unordered_set<const Value*> reachable;
  std::vector<const Value*> todo;
  if (keep) reachable.insert(keep.get()), todo.push_back(keep.get());
  while (!todo.empty()) {
    const Value* v = todo.back();
    todo.pop_back();
    for (size_t i = 0;; ++i) {
      const Value* c = child(v, i);
      if (c == reinterpret_cast<const Value*>(uintptr_t(1))) break;
      if (c && reachable.insert(c).second) todo.push_back(c);
    }
  }
  std::vector<ValuePtr> held;  // every child until all links are cut: none dies while we walk
  for (const auto& w : mutated_) {
    ValuePtr v = w.lock();
    if (!v || reachable.count(v.get())) continue;
    for (auto& c : v->items) held.push_back(std::move(c));
    for (auto& [k, c] : v->entries) held.push_back(std::move(k)), held.push_back(std::move(c));
    held.push_back(std::move(v->state));
    v->items.clear();
    v->entries.clear();
    held.push_back(std::move(v));
  }
}

}  // namespace

bool global_allowed(const std::string& q) { return torch_globals::allowed(q); }

ValuePtr unpickle(std::string_view data, const std::string& file, const std::string& where,
                  const PersistentLoad& persistent_load, const UnpickleOptions& opts, size_t* end_offset) {
  Machine m(data, file, where, persistent_load, opts);
  try {
    ValuePtr root = m.run(end_offset);
    check_tree(root, file, where);
    m.cut_cycles(root);
    return root;
  } catch (...) {
    m.cut_cycles(nullptr);
    throw;
  }
}

}  // namespace optforge
