// /v1/chat/completions' parsing, prompt rendering and shapes, the chat template file's checks,
// and best_of's selection in the completions writer, without a server (the served behaviour
// is checked against transformers and the openai client in tests/python/test_chat.py and
// test_best_of.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "serve/api_error.h"
#include "serve/chat_api.h"
#include "serve_test_context.h"
#include "util/error.h"

using namespace optforge;
using namespace optforge::serve;
using nlohmann::json;
using optforge::serve::testing::test_context;
using optforge::serve::testing::test_tokenizer;

namespace {

json chat(json messages) { return {{"model", "opt-test"}, {"messages", std::move(messages)}}; }

// The param and message of the ApiError parsing `body` throws ("" when it parses).
std::pair<std::string, std::string> refusal(const json& body) {
  try {
    parse_chat_completion(body, test_context(), default_chat_template());
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    return {e.param(), e.message()};
  }
  return {};
}

std::string write_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "optforge_chat_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace

TEST(ChatTemplate, DefaultRendering) {
  const std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "?"}};
  EXPECT_EQ(render_chat(default_chat_template(), m),
            "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: ?\nAssistant:");
}

TEST(ChatParse, PromptStopsAndLogprobs) {
  const auto r = parse_chat_completion(
      json{{"model", "opt-test"},
           {"messages",
            {{{"role", "developer"}, {"content", "S"}},
             {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}}},
           {"stop", "x"},
           {"logprobs", true},
           {"top_logprobs", 3},
           {"max_completion_tokens", 5}},
      test_context(), default_chat_template());
  EXPECT_EQ(r.prompts[0], test_tokenizer().encode("System: S\nUser: ab\nAssistant:"));  // </s> first
  EXPECT_EQ(r.spec.opts.stop, (std::vector<std::string>{"x", "\nUser:"}));
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.spec.opts.top_logprobs, 3);
  EXPECT_EQ(r.spec.opts.max_tokens, 5);
  // No max_tokens: the rest of the context, within --max-tokens-limit.
  const auto d =
      parse_chat_completion(chat({{{"role", "user"}, {"content", "Hi"}}}), test_context(), default_chat_template());
  EXPECT_EQ(d.spec.opts.max_tokens, 40);
  EXPECT_EQ(d.logprobs, -1);
}

TEST(ChatParse, RefusalsNameTheField) {
  const json user = {{"role", "user"}, {"content", "Hi"}};
  EXPECT_EQ(refusal(chat(json::array())).first, "messages");
  EXPECT_EQ(refusal(chat({{{"role", "tool"}, {"content", "x"}}})).second.rfind("messages[0].role", 0), 0u);
  EXPECT_EQ(refusal(chat({user, {{"role", "user"}}})).second.rfind("messages[1].content", 0), 0u);
  EXPECT_EQ(refusal(chat({{{"role", "user"}, {"content", 3}}})).second.rfind("messages[0].content", 0), 0u);
  EXPECT_EQ(refusal(chat({{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "u"}}}}}}))
                .second.rfind("messages[0].content[0].image_url", 0),
            0u);
  EXPECT_EQ(refusal(chat({{{"role", "user"}, {"content", "x"}, {"name", "bob"}}})).second.rfind("messages[0].name", 0),
            0u);
  json b = chat({user});
  b["tools"] = json::array();
  EXPECT_EQ(refusal(b).first, "tools");
  b = chat({user});
  b["top_logprobs"] = 2;
  EXPECT_EQ(refusal(b).first, "top_logprobs");
  b["logprobs"] = true;
  b["top_logprobs"] = 21;
  EXPECT_EQ(refusal(b).first, "top_logprobs");
  b = chat({user});
  b["max_tokens"] = 3;
  b["max_completion_tokens"] = 3;
  EXPECT_EQ(refusal(b).first, "max_completion_tokens");
  b = chat({user});
  b["max_tokens"] = 41;
  EXPECT_EQ(refusal(b).first, "max_tokens");
  EXPECT_EQ(refusal(chat({{{"role", "user"},
                           {"content",
                            [] {
                              std::string s;
                              for (int i = 0; i < 100; ++i) s += " a b";  // 200 tokens: more than the context of 64
                              return s;
                            }()}}}))
                .first,
            "messages");
}

TEST(ChatWriter, ResponseAndChunkShapes) {
  const ApiContext c = test_context();
  const auto req = parse_chat_completion(json{{"model", "opt-test"},
                                              {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                              {"n", 2},
                                              {"logprobs", true},
                                              {"top_logprobs", 1}},
                                         c, default_chat_template());
  ChatWriter w(req, c, "chatcmpl-x", 1);
  const auto start = w.start_chunks();
  ASSERT_EQ(start.size(), 2u);
  EXPECT_EQ(start[1]["choices"][0]["delta"].dump(), R"({"role":"assistant","content":""})");
  EXPECT_EQ(start[1]["object"], "chat.completion.chunk");
  for (int64_t j = 0; j < 2; ++j) {
    JobEvent t{JobEvent::Kind::Token};
    t.sample = j, t.text = " the";
    t.tokens.push_back({5, -0.5f, {{5, -0.5f}}});
    const auto ch = w.chunks(t);
    ASSERT_EQ(ch.size(), 1u);
    EXPECT_EQ(ch[0]["choices"][0]["logprobs"]["content"][0]["bytes"], json::array({32, 116, 104, 101}));
    JobEvent f{JobEvent::Kind::Finish};
    f.sample = j, f.finish_reason = "stop", f.text = j ? "!" : "";
    EXPECT_EQ(w.chunks(f).size(), size_t(1 + j));  // the held-back text, then an empty delta with the reason
  }
  ASSERT_TRUE(w.finished());
  const auto r = w.response();
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][1]["message"].dump(), R"({"role":"assistant","content":" the!"})");
  const auto& e = r["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(e["token"], " the");
  EXPECT_EQ(e["top_logprobs"][0]["token"], " the");
  EXPECT_EQ(r["usage"]["completion_tokens"], 2);
  EXPECT_EQ(w.usage_chunk()["choices"], json::array());
}

TEST(ChatTemplateFile, LoadsAndNamesBadKeys) {
  const std::string good =
      write_file("good.json",
                 R"({"system": {"prefix": "<s>", "suffix": "|"}, "user": {"prefix": "Q: ", "suffix": "\n"},
          "assistant": {"prefix": "A: ", "suffix": "\n"}, "generation_prompt": "A:", "stop": ["\nQ:"]})");
  const ChatTemplate t = load_chat_template(good);
  EXPECT_EQ(render_chat(t, {{"user", "x"}}), "Q: x\nA:");
  EXPECT_EQ(t.stop, std::vector<std::string>{"\nQ:"});
  auto message = [](const std::string& name, const std::string& text) {
    const std::string path = write_file(name, text);
    try {
      load_chat_template(path);
    } catch (const Error& e) {
      EXPECT_EQ(e.file(), path);
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  const std::string roles = R"("system": {"prefix": "", "suffix": ""}, "user": {"prefix": "", "suffix": ""},)";
  EXPECT_NE(message("a.json", "{" + roles + R"("generation_prompt": "A:"})").find("\"assistant\""), std::string::npos);
  EXPECT_NE(message("b.json", "{" + roles + R"("assistant": {"prefix": 1, "suffix": ""}, "generation_prompt": ""})")
                .find("assistant: \"prefix\" must be a string"),
            std::string::npos);
  EXPECT_NE(
      message("c.json", "{" + roles + R"("assistant": {"prefix": "", "suffix": ""}, "generation_prompt": "", "x": 1})")
          .find("unknown key \"x\""),
      std::string::npos);
  EXPECT_NE(
      message("d.json",
              "{" + roles + R"("assistant": {"prefix": "", "suffix": ""}, "generation_prompt": "", "stop": [""]})")
          .find("\"stop\""),
      std::string::npos);
  EXPECT_NE(message("e.json", "{" + roles + R"("assistant": {"prefix": "", "suffix": ""}})").find("generation_prompt"),
            std::string::npos);
}

TEST(BestOf, ReturnsTheNBestByCumulativeLogprob) {
  const ApiContext c = test_context();
  const auto req =
      parse_openai_completion(json{{"model", "opt-test"}, {"prompt", {"a", "b"}}, {"n", 2}, {"best_of", 3}}, c, true);
  EXPECT_EQ(req.spec.opts.n, 3);  // generated like n = 3 samples
  EXPECT_EQ(req.n_best, 2);
  EXPECT_TRUE(req.spec.controls.logprobs);  // needed for the ranking, though not asked for
  CompletionWriter w(req, c, "cmpl-x", 1);
  const float lp[2][3] = {{-3, -1, -2}, {-1, -1, -5}};  // prompt 1: a tie, the earlier sample first
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t j = 0; j < 3; ++j) {
      JobEvent t{JobEvent::Kind::Token};
      t.index = p, t.sample = j, t.text = std::to_string(p * 3 + j);
      t.tokens.push_back({5, lp[p][j], {}});
      t.tokens.push_back({6, 0.0f, {}});
      w.collect(t);
      JobEvent f{JobEvent::Kind::Finish};
      f.index = p, f.sample = j, f.finish_reason = "length";
      w.collect(f);
    }
  const auto r = w.response();
  ASSERT_EQ(r["choices"].size(), 4u);
  const char* want[] = {"1", "2", "3", "4"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r["choices"][i]["text"], want[i]);
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["logprobs"], nullptr);  // not asked for
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], 12);  // every sample generated, as OpenAI bills
  auto status = [&](json body) {
    try {
      parse_openai_completion(body, c, true);
      return 200;
    } catch (const ApiError& e) { return e.status(); }
  };
  EXPECT_EQ(status(json{{"model", "opt-test"}, {"best_of", 3}, {"stream", true}}), 400);
  EXPECT_EQ(status(json{{"model", "opt-test"}, {"best_of", 2}, {"n", 3}}), 400);
  EXPECT_EQ(status(json{{"model", "opt-test"}, {"best_of", 2}, {"n", 2}, {"stream", true}}), 200);  // best_of = n
}
