// How /v1/chat/completions turns messages into one prompt text. OPT was trained on plain text and
// has no chat format, so the format is ours and plain (docs/serving.md §Chat templates): each
// message is its role's prefix, its content and its role's suffix; the generation prompt follows;
// generation stops at the template's stop strings (the start of the next turn). `serve
// --chat-template FILE` replaces the default with a JSON file of the same parts. Jinja templates
// (tokenizer_config.json's `chat_template`) are refused, not guessed at: there is no C++ Jinja
// engine in Debian or on PyPI to run them faithfully.
#pragma once

#include <string>
#include <vector>

namespace optforge::serve {

struct ChatTemplate {
  struct Role {
    std::string prefix, suffix;
  };
  Role system, user, assistant;   // "developer" messages use `system`, as OpenAI treats them
  std::string generation_prompt;  // after the last message: where the assistant's reply begins
  std::vector<std::string> stop;  // always applied, beside a request's own `stop`
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant" ("developer" is read as "system")
  std::string content;
};

// "System: ", "User: ", "Assistant: " prefixes, "\n" suffixes, generation prompt "Assistant:",
// stop "\nUser:".
ChatTemplate default_chat_template();

// The JSON file at `path`: {"system": {"prefix", "suffix"}, "user": {...}, "assistant": {...},
// "generation_prompt": string, "stop": [non-empty strings] (optional)}; every other key is
// refused. Throws Error naming the file and the key (missing, wrong type, unknown).
ChatTemplate load_chat_template(const std::string& path);

// The prompt text: each message's prefix + content + suffix, then the generation prompt.
// `messages` roles must be system, user or assistant (the API checks them first).
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages);

// Throws Error when `dir` carries a transformers chat template (a Jinja template we cannot run):
// a `chat_template` in tokenizer_config.json or chat_template.json, a chat_template.jinja, or an
// additional_chat_templates/ folder; the error names the file and says to pass --chat-template.
void refuse_jinja_chat_template(const std::string& dir);

}  // namespace optforge::serve
