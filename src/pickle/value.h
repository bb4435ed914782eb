// The object tree a pickle describes, as inert data: nothing in it can run code. Python's
// containers map to Kind values; class instances that we rebuild (argparse.Namespace, omegaconf
// configs, ...) become Object records holding the class name, constructor args and state;
// torch tensors become Tensor leaves viewing their storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace optforge {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, List, Tuple, Dict, Set, Object, Global, Tensor };

  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                       // Str, Bytes; Global/Object: "module.name"
  std::vector<ValuePtr> items;                         // List, Tuple, Set; Object: constructor args
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict (insertion order kept)
  bool ordered = false;                                // Dict: was a collections.OrderedDict
  ValuePtr state;                                      // Object: what BUILD set (usually a Dict)
  std::shared_ptr<Tensor> tensor;                      // Tensor

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Tears children down iteratively: a hostile file can nest containers deeper than the stack.
  ~Value();

  static ValuePtr none();
  static ValuePtr boolean(bool v);
  static ValuePtr integer(int64_t v);
  static ValuePtr real(double v);
  static ValuePtr str(std::string v);
  static ValuePtr bytes(std::string v);
  static ValuePtr list(std::vector<ValuePtr> v = {});
  static ValuePtr tuple(std::vector<ValuePtr> v = {});
  static ValuePtr dict(bool ordered = false);
  static ValuePtr object(std::string cls, std::vector<ValuePtr> args = {}, ValuePtr state = nullptr);
  static ValuePtr global(std::string name);
  static ValuePtr of_tensor(Tensor t);

  bool is(Kind k) const { return kind == k; }
  bool is_dict() const { return kind == Kind::Dict; }
  bool is_str() const { return kind == Kind::Str; }
  bool is_tensor() const { return kind == Kind::Tensor; }
  bool is_sequence() const { return kind == Kind::List || kind == Kind::Tuple; }

  // Dict access by string key (nullptr when absent or not a dict).
  ValuePtr get(const std::string& key) const;
  void set(const std::string& key, ValuePtr v);  // set_item with a str key
  // Python's d[key] = v on a Dict: replaces the value of the same key object or of an equal str
  // key in place (insertion order kept), appends the pair otherwise (other keys are not compared).
  void set_item(ValuePtr key, ValuePtr v);
  // Python's d.update(other) for two Dicts: set_item for each entry of a copy of other's entries,
  // so updating a dict from itself changes nothing.
  void update(const Value& other);
  bool erase(const std::string& key);
  // Attribute-like access that also sees through Objects (argparse.Namespace, DictConfig):
  // a dict key, or a key of the object's state dict.
  ValuePtr attr(const std::string& key) const;

  // Short type name for messages and `inspect` ("dict", "tensor", "argparse.Namespace").
  std::string type_name() const;
};

const char* kind_name(Value::Kind k);

// A copy of the tree's containers with every tensor replaced by fn(tensor); other leaves shared.
ValuePtr map_tensors(const ValuePtr& root, const std::function<Tensor(const Tensor&)>& fn);

}  // namespace optforge
