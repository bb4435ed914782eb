#include "tokenizer/tokenizer_files.h"

#include <nlohmann/json.hpp>

#include "io/json_file.h"
#include "io/mmap_file.h"
#include "util/error.h"

namespace optforge {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

bool flag(const Json& o, const char* key, const std::string& file, const std::string& where) {
  if (!o.contains(key) || o[key].is_null()) return false;
  if (!o[key].is_boolean()) throw Error(std::string("\"") + key + "\" must be true or false", file, where);
  return o[key].get<bool>();
}

// A token as these files write it: "</s>", or {"content": "</s>", "lstrip": false, ...}.
AddedToken token_of(const Json& v, const std::string& file, const std::string& where) {
  AddedToken t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
    return t;
  }
  if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
    throw Error("expected a token string or an object with a \"content\" string", file, where);
  t.content = v["content"].get<std::string>();
  t.lstrip = flag(v, "lstrip", file, where);
  t.rstrip = flag(v, "rstrip", file, where);
  if (flag(v, "single_word", file, where))
    throw Error("single_word tokens are not supported (token \"" + t.content + "\")", file, where);
  if (v.contains("special") && v["special"].is_boolean()) t.special = v["special"].get<bool>();
  return t;
}

// Adds or replaces (by content) an added token; its id stays unknown (-1) until it is looked up.
void put(TokenizerConfig& c, AddedToken t) {
  for (auto& a : c.added)
    if (a.content == t.content) {
      if (t.id < 0) t.id = a.id;
      a = std::move(t);
      return;
    }
  c.added.push_back(std::move(t));
}

void read_one(const fs::path& path, TokenizerConfig& c) {
  if (!fs::exists(path)) return;
  const std::string file = path.string();
  Json j = read_json_object(path.string());
  if (j.contains("added_tokens_decoder")) {
    if (!j["added_tokens_decoder"].is_object()) throw Error("\"added_tokens_decoder\" must be an object", file);
    for (auto& [key, v] : j["added_tokens_decoder"].items()) {
      AddedToken t = token_of(v, file, "added_tokens_decoder[\"" + key + "\"]");
      try {
        t.id = std::stoi(key);
      } catch (const std::exception&) {
        throw Error("keys must be token ids", file, "added_tokens_decoder[\"" + key + "\"]");
      }
      put(c, std::move(t));
    }
  }
  std::string* roles[] = {&c.bos, &c.eos, &c.unk, &c.pad};
  const char* keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
  for (int r = 0; r < 4; ++r) {
    if (!j.contains(keys[r]) || j[keys[r]].is_null()) continue;
    AddedToken t = token_of(j[keys[r]], file, keys[r]);
    *roles[r] = t.content;
    put(c, std::move(t));
  }
  if (j.contains("additional_special_tokens") && !j["additional_special_tokens"].is_null()) {
    if (!j["additional_special_tokens"].is_array()) throw Error("must be a list", file, "additional_special_tokens");
    for (const auto& v : j["additional_special_tokens"]) put(c, token_of(v, file, "additional_special_tokens"));
  }
  c.source = file;
}

void check_byte_level(const Json& pre, const std::string& file, TokenizerConfig& c) {
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 1)
    return check_byte_level(pre["pretokenizers"][0], file, c);
  std::string type = pre.is_object() ? pre.value("type", "?") : "none";
  if (type != "ByteLevel")
    throw Error(
        "pre_tokenizer is " + type + "; optforge reads only byte-level BPE (pre_tokenizer ByteLevel, as GPT-2 and OPT)",
        file, "pre_tokenizer");
  if (pre.contains("use_regex") && pre["use_regex"].is_boolean() && !pre["use_regex"].get<bool>())
    throw Error("ByteLevel with use_regex false is not supported", file, "pre_tokenizer");
  c.add_prefix_space = pre.value("add_prefix_space", false);
}

std::string merges_of(const Json& merges, const std::string& file) {
  if (!merges.is_array()) throw Error("must be a list", file, "model.merges");
  std::string out;
  for (const auto& m : merges) {
    std::string a, b;
    if (m.is_string()) {  // "a b" (tokenizers < 0.20)
      out += m.get<std::string>();
      out += '\n';
      continue;
    }
    if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_string())
      throw Error("each merge must be \"a b\" or [\"a\", \"b\"]", file, "model.merges");
    a = m[0].get<std::string>(), b = m[1].get<std::string>();
    if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos)
      throw Error("merge symbols containing a space are not supported (\"" + a + "\", \"" + b + "\")", file,
                  "model.merges");
    out += a + ' ' + b + '\n';
  }
  return out;
}

}  // namespace

void read_special_token_files(const fs::path& dir, TokenizerConfig& config) {
  read_one(dir / "tokenizer_config.json", config);
  read_one(dir / "special_tokens_map.json", config);
}

namespace {

// The parse itself; nlohmann's type errors (a field of the wrong JSON type) escape from here.
TokenizerJson parse_tokenizer_json_checked(std::string_view text, const std::string& file, TokenizerConfig& c) {
  Json j = parse_json_object(text, file);
  if (!j.contains("model") || !j["model"].is_object()) throw Error("no \"model\" object", file);
  const Json& m = j["model"];
  const std::string type = m.value("type", "");
  if (type != "BPE")
    throw Error("the model is " + (type.empty() ? std::string("of no stated type") : type) +
                    ", not BPE; optforge reads only byte-level BPE tokenizers (GPT-2's, OPT's)",
                file, "model.type");
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !(m[key].is_string() && m[key].get<std::string>().empty()))
      throw Error(std::string("BPE option \"") + key + "\" is not supported", file, "model");
  if (m.value("byte_fallback", false)) throw Error("BPE option \"byte_fallback\" is not supported", file, "model");
  if (m.value("ignore_merges", false)) throw Error("BPE option \"ignore_merges\" is not supported", file, "model");
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    throw Error("normalizer " + j["normalizer"].value("type", std::string("?")) + " is not supported", file,
                "normalizer");
  check_byte_level(j.value("pre_tokenizer", Json()), file, c);
  if (!m.contains("vocab") || !m["vocab"].is_object())
    throw Error("must be an object {token: id}", file, "model.vocab");
  TokenizerJson out{m["vocab"].dump(), merges_of(m.value("merges", Json::array()), file)};
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& v : j["added_tokens"]) {
      AddedToken t = token_of(v, file, "added_tokens");
      if (!v.contains("id") || !v["id"].is_number_integer() || v["id"].get<int64_t>() < 0 ||
          v["id"].get<int64_t>() > INT32_MAX)
        throw Error("each needs an integer \"id\" in [0, 2^31)", file, "added_tokens");
      t.id = v["id"].get<int32_t>();
      put(c, std::move(t));
    }
  c.source = file;
  return out;
}

}  // namespace

TokenizerJson read_tokenizer_json(const fs::path& path, TokenizerConfig& c) {
  return parse_tokenizer_json(read_text_file(path.string()), path.string(), c);
}

TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& file, TokenizerConfig& c) {
  try {
    return parse_tokenizer_json_checked(text, file, c);
  } catch (const Json::exception& e) {  // a field of the wrong JSON type
    throw Error(std::string("unexpected JSON content: ") + e.what(), file);
  }
}

}  // namespace optforge
