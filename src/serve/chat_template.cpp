#include "serve/chat_template.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/json_file.h"
#include "util/error.h"

namespace optforge::serve {
namespace {

using nlohmann::json;

std::string string_at(const json& obj, const std::string& key, const std::string& where, const std::string& file) {
  if (!obj.contains(key)) throw Error("missing key \"" + key + "\" (a string)", file, where);
  if (!obj[key].is_string())
    throw Error("\"" + key + "\" must be a string; got " + std::string(obj[key].type_name()), file, where);
  return obj[key].get<std::string>();
}

void refuse_unknown_keys(const json& obj, const std::vector<std::string>& known, const std::string& where,
                         const std::string& file) {
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      throw Error(
          "unknown key \"" + it.key() + "\" (a chat template has only the keys of docs/serving.md §Chat templates)",
          file, where);
}

ChatTemplate::Role role_at(const json& top, const std::string& role, const std::string& file) {
  if (!top.contains(role)) throw Error("missing key \"" + role + "\" (an object with \"prefix\" and \"suffix\")", file);
  const json& r = top[role];
  if (!r.is_object())
    throw Error("\"" + role + "\" must be an object with \"prefix\" and \"suffix\"; got " + r.type_name(), file);
  refuse_unknown_keys(r, {"prefix", "suffix"}, role, file);
  return {string_at(r, "prefix", role, file), string_at(r, "suffix", role, file)};
}

std::vector<std::string> stop_at(const json& top, const std::string& file) {
  std::vector<std::string> stop;
  if (!top.contains("stop")) return stop;
  if (!top["stop"].is_array())
    throw Error(std::string("\"stop\" must be an array of strings; got ") + top["stop"].type_name(), file);
  for (const json& s : top["stop"]) {
    // An empty stop string would end every reply before it starts.
    if (!s.is_string() || s.get<std::string>().empty())
      throw Error("\"stop\" must hold only non-empty strings; got " + s.dump(), file, "stop");
    stop.push_back(s.get<std::string>());
  }
  return stop;
}

}  // namespace

ChatTemplate default_chat_template() {
  ChatTemplate t;
  t.system = {"System: ", "\n"};
  t.user = {"User: ", "\n"};
  t.assistant = {"Assistant: ", "\n"};
  // No space after the colon: OPT's BPE carries a word's space at the start of its token, so the
  // reply's first token brings its own.
  t.generation_prompt = "Assistant:";
  t.stop = {"\nUser:"};
  return t;
}

ChatTemplate load_chat_template(const std::string& path) {
  const json top = read_json_object(path);
  refuse_unknown_keys(top, {"system", "user", "assistant", "generation_prompt", "stop"}, "", path);
  ChatTemplate t;
  t.system = role_at(top, "system", path);
  t.user = role_at(top, "user", path);
  t.assistant = role_at(top, "assistant", path);
  t.generation_prompt = string_at(top, "generation_prompt", "", path);
  t.stop = stop_at(top, path);
  return t;
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const ChatMessage& m : messages) {
    const ChatTemplate::Role& r = m.role == "user" ? t.user : m.role == "assistant" ? t.assistant : t.system;
    out += r.prefix + m.content + r.suffix;
  }
  return out + t.generation_prompt;
}

namespace {

// Where transformers keeps a tokenizer's chat templates: the `chat_template` key of
// tokenizer_config.json (older saves), chat_template.jinja (what save_pretrained writes now),
// chat_template.json ({"chat_template": ...}), and named templates in additional_chat_templates/.
// Returns the first that exists in `dir`, with the key the error names; "" when none does.
std::pair<std::string, std::string> find_chat_template(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const char* name : {"tokenizer_config.json", "chat_template.json"}) {
    const std::filesystem::path file = dir / name;
    if (!std::filesystem::is_regular_file(file, ec)) continue;
    const json cfg = read_json_object(file.string());
    if (cfg.contains("chat_template") && !cfg["chat_template"].is_null()) return {file.string(), "chat_template"};
  }
  for (const char* name : {"chat_template.jinja", "additional_chat_templates"})
    if (std::filesystem::exists(dir / name, ec)) return {(dir / name).string(), ""};
  return {};
}

}  // namespace

void refuse_jinja_chat_template(const std::string& dir) {
  const auto [file, key] = find_chat_template(dir);
  if (file.empty()) return;
  throw Error(
      "holds a chat template for transformers (Jinja), which optforge cannot run (there is no C++ Jinja engine in "
      "Debian or on PyPI), and guessing its format would give the model prompts it was not trained on; write the "
      "format as a chat template file (docs/serving.md §Chat templates) and pass --chat-template FILE",
      file, key);
}

}  // namespace optforge::serve
