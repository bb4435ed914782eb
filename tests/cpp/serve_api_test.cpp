// Request parsing and response shapes without a server: OpenAI's fields, types and ranges,
// the prompt forms, alpa's logprobs cache rule, the stop/UTF-8 hold-back, the metrics text.
#include <gtest/gtest.h>

#include "serve/alpa_api.h"
#include "serve/json_fields.h"
#include "serve/metrics.h"
#include "serve/openai_api.h"
#include "serve_test_context.h"

using namespace optforge;
using namespace optforge::serve;
using nlohmann::json;
using optforge::serve::testing::test_context;
using optforge::serve::testing::test_tokenizer;

namespace {

int status_of(const json& body, bool strict = true) {
  try {
    parse_openai_completion(body, test_context(), strict);
    return 200;
  } catch (const ApiError& e) { return e.status(); }
}

}  // namespace

TEST(OpenAiParse, DefaultsAndPromptForms) {
  const auto r = parse_openai_completion(json{{"model", "opt-test"}, {"prompt", "Hello world"}}, test_context(), true);
  EXPECT_EQ(r.prompts, (std::vector<std::vector<int32_t>>{{2, 31414, 232}}));
  EXPECT_EQ(r.spec.opts.max_tokens, 16);
  EXPECT_EQ(r.spec.opts.n, 1);
  EXPECT_FLOAT_EQ(r.spec.opts.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(
      parse_openai_completion(json{{"model", "opt-test"}, {"prompt", {"a", "b"}}}, test_context(), true).prompts.size(),
      2u);
  EXPECT_EQ(parse_openai_completion(json{{"model", "opt-test"}, {"prompt", {2, 5, 6}}}, test_context(), true).prompts,
            (std::vector<std::vector<int32_t>>{{2, 5, 6}}));
  EXPECT_EQ(parse_openai_completion(json{{"model", "opt-test"}, {"prompt", {{2, 5}, {7}}}}, test_context(), true)
                .prompts.size(),
            2u);
  // No prompt: OpenAI's <|endoftext|>, i.e. a new document.
  EXPECT_EQ(parse_openai_completion(json{{"model", "opt-test"}}, test_context(), true).prompts,
            (std::vector<std::vector<int32_t>>{{2}}));
  const auto e = parse_openai_completion(
      json{{"model", "opt-test"}, {"echo", true}, {"logprobs", 2}, {"max_tokens", 16.0}}, test_context(), true);
  EXPECT_TRUE(e.spec.opts.echo);
  EXPECT_EQ(e.spec.opts.top_logprobs, 2);
}

TEST(OpenAiParse, RefusesBadFieldsWithTheRightStatus) {
  const json ok = {{"model", "opt-test"}, {"prompt", "Hi"}};
  auto with = [&](const char* k, json v) {
    json b = ok;
    b[k] = std::move(v);
    return b;
  };
  EXPECT_EQ(status_of(ok), 200);
  EXPECT_EQ(status_of(with("model", "other")), 404);
  EXPECT_EQ(status_of(with("model", "other"), false), 200);  // metaseq's engine routes ignore it
  EXPECT_EQ(status_of(json{{"prompt", "Hi"}}), 400);
  EXPECT_EQ(status_of(with("max_tokens", -1)), 400);
  EXPECT_EQ(status_of(with("max_tokens", 41)), 400);  // over --max-tokens-limit
  EXPECT_EQ(status_of(with("max_tokens", 1.5)), 400);
  EXPECT_EQ(status_of(with("max_tokens", "3")), 400);
  EXPECT_EQ(status_of(with("temperature", 2.5)), 400);
  EXPECT_EQ(status_of(with("top_p", -0.1)), 400);
  EXPECT_EQ(status_of(with("n", 5)), 400);
  EXPECT_EQ(status_of(with("best_of", 5)), 400);  // above the batch, as n is (best_of > n itself is served)
  EXPECT_EQ(status_of(with("logprobs", 6)), 400);
  EXPECT_EQ(status_of(with("stop", json::array({"a", "b", "c", "d", "e"}))), 400);
  EXPECT_EQ(status_of(with("stop", 3)), 400);
  EXPECT_EQ(status_of(with("stream", 1)), 400);
  EXPECT_EQ(status_of(with("stream_options", json{{"include_usage", true}})), 400);  // only with stream
  EXPECT_EQ(status_of(with("logit_bias", json{{"abc", 1}})), 400);
  EXPECT_EQ(status_of(with("suffix", "x")), 400);
  EXPECT_EQ(status_of(with("prompt", json::array())), 400);
  EXPECT_EQ(status_of(with("prompt", json::array({-1}))), 400);
  EXPECT_EQ(status_of(with("prompt", json::array({json::array()}))), 400);
  EXPECT_EQ(status_of(with("prompt", std::vector<int>(60, 5))), 400);  // 60 + 16 > context 64
  EXPECT_EQ(status_of(with("whatever", 1)), 400);
  EXPECT_EQ(status_of(with("whatever", 1), false), 200);
  try {
    parse_openai_completion(with("max_tokens", -1), test_context(), true);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "max_tokens");
    EXPECT_EQ(e.message(), "-1 is less than the minimum of 0 - 'max_tokens'");
    EXPECT_EQ(e.to_json()["error"]["type"], "invalid_request_error");
  }
  EXPECT_THROW(parse_json_object("{"), ApiError);
  EXPECT_THROW(parse_json_object("[]"), ApiError);
}

TEST(OpenAiWriter, ResponseShapeAndChoiceOrder) {
  auto req = parse_openai_completion(json{{"model", "opt-test"}, {"prompt", {"a", "b"}}, {"n", 2}, {"logprobs", 1}},
                                     test_context(), true);
  const ApiContext c = test_context();  // the writer keeps a reference
  CompletionWriter w(req, c, "cmpl-x", 1);
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t j = 0; j < 2; ++j) {
      JobEvent t{JobEvent::Kind::Token};
      t.index = p, t.sample = j, t.text = " the";
      t.tokens.push_back({5, -0.5f, {{5, -0.5f}}});
      EXPECT_EQ(w.chunks(t).size(), 1u);
      JobEvent f{JobEvent::Kind::Finish};
      f.index = p, f.sample = j, f.finish_reason = j ? "stop" : "length";
      w.collect(f);
    }
  ASSERT_TRUE(w.finished());
  const auto r = w.response();
  ASSERT_EQ(r["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r["choices"][size_t(i)]["index"], i);
    EXPECT_EQ(r["choices"][size_t(i)]["text"], " the");
    EXPECT_EQ(r["choices"][size_t(i)]["logprobs"]["tokens"][0], " the");
    EXPECT_EQ(r["choices"][size_t(i)]["logprobs"]["text_offset"][0], 0);
  }
  EXPECT_EQ(r["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(r["usage"]["completion_tokens"], 4);
  EXPECT_EQ(r["object"], "text_completion");
}

TEST(AlpaApi, LogprobsCacheMustBeExtendedByOneToken) {
  AlpaLogprobsCache cache;
  AlpaLogprobsRequest r;
  r.prompts = {{2, 5}};
  const std::string id = cache.check_and_store(r);
  EXPECT_EQ(id.size(), 36u);
  r.cache_id = id;
  r.prompts = {{2, 5, 9}};
  EXPECT_EQ(cache.check_and_store(r), id);
  r.prompts = {{2, 5, 9}};  // not one more than the cached {2, 5, 9}
  EXPECT_THROW(cache.check_and_store(r), ApiError);
  r.cache_id = "nope";
  EXPECT_THROW(cache.check_and_store(r), ApiError);
  const auto a =
      parse_alpa_completion(json{{"prompt", "a\r\nb"}, {"temperature", 0.0004}, {"top_p", 0.74}}, test_context());
  EXPECT_EQ(a.prompts[0], test_tokenizer().encode("a\nb"));
  EXPECT_TRUE(a.spec.opts.sampling.greedy());
  EXPECT_FLOAT_EQ(a.spec.opts.sampling.top_p, 0.7f);
  EXPECT_EQ(alpa_error_json(ApiError(400, "x"))["type"], "error");
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.count_request("/v1/completions", 200);
  m.observe_ttft(0.02);
  m.observe_ttft(3);
  const std::string t = m.render(3);
  EXPECT_NE(t.find("# TYPE optforge_time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_NE(t.find("optforge_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("optforge_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("optforge_time_to_first_token_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(t.find("optforge_http_requests_total{route=\"/v1/completions\",code=\"200\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("optforge_http_connections 3\n"), std::string::npos);
}
