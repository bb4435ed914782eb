// OpenAI's legacy completions API (POST /v1/completions): the request body turned into jobs,
// and the jobs' events turned back into OpenAI's response, or its server-sent event chunks.
// Shapes follow OpenAI exactly: choices ordered by prompt then sample (index = prompt * n + j),
// logprobs {tokens, token_logprobs, top_logprobs, text_offset} with a null first entry when the
// prompt is echoed, finish_reason "stop" or "length", usage; errors as ApiError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/chat_template.h"
#include "serve/job.h"
#include "serve/response_writer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/stream_decoder.h"

namespace optforge::serve {

// What request parsing needs to know about the server.
struct ApiContext {
  const Tokenizer* tok = nullptr;
  std::string model_id;                                  // what /v1/models lists and requests must name
  int64_t vocab = 50272;                                 // the model's embedding rows
  int64_t context = 2048;                                // the model's maximum positions
  int64_t max_tokens_limit = 2048;                       // --max-tokens-limit
  int64_t max_n = 32;                                    // samples per prompt (the batch size)
  ChatTemplate chat_template = default_chat_template();  // /v1/chat/completions' prompt format
};

struct CompletionRequest {
  std::vector<std::vector<int32_t>> prompts;
  JobSpec spec;  // shared by every prompt; each job gets its own prompt and index
  bool stream = false, include_usage = false, echo = false;
  int64_t logprobs = -1;  // -1: not asked for
  // best_of > n: spec.opts.n is best_of (the samples generated per prompt) and the n_best = n with
  // the highest cumulative logprob are returned; 0: every sample is returned.
  int64_t n_best = 0;
};

// `strict`: the /v1 route (model required and known, unknown fields rejected, as OpenAI does);
// metaseq's engine routes are lenient. Throws ApiError.
CompletionRequest parse_openai_completion(const nlohmann::json& body, const ApiContext& ctx, bool strict);

// "cmpl-" and 24 random characters.
std::string new_completion_id();

// Builds responses from the jobs' events (ordered JSON: fields and top_logprobs in OpenAI's order): either collect()
// all events and ask for response(), or feed each event to chunks() and send what it returns as SSE data lines.
// With n_best, response() returns per prompt the n_best samples with the highest cumulative
// logprob (the sum of the generated tokens' logprobs, as `token_logprobs` reports them), best
// first (ties: the earlier sample), indexed prompt * n_best + j; usage counts every sample.
class CompletionWriter : public ResponseWriter {
 public:
  CompletionWriter(const CompletionRequest& req, const ApiContext& ctx, std::string id, int64_t created);

  // Streaming: the chunks an event produces (possibly none).
  std::vector<nlohmann::ordered_json> start_chunks() override;  // echoed prompt text, when echo comes without logprobs
  std::vector<nlohmann::ordered_json> chunks(const JobEvent& e) override;
  nlohmann::ordered_json usage_chunk() const override;  // stream_options.include_usage: empty choices + usage

  // Whole response.
  void collect(const JobEvent& e) override;
  nlohmann::ordered_json response() const override;

  bool finished() const override { return finished_ == int64_t(choices_.size()); }
  nlohmann::ordered_json usage() const;

 private:
  struct Choice {
    explicit Choice(const Tokenizer& tok) : decoder(text_bytes(tok)) {}
    std::string text;                    // echoed prompt + generated text
    StreamDecoder decoder;               // the tokens' text so far, for text_offset
    std::vector<GeneratedToken> tokens;  // with logprobs: echoed prompt tokens + generated
    std::vector<int64_t> offsets;        // text_offset of each token
    int64_t chars = 0;                   // characters so far (offsets of the next token)
    int64_t generated = 0;
    double cumulative_logprob = 0;  // of the generated tokens: what best_of ranks by
    std::string finish_reason;
  };
  int64_t choice_index(const JobEvent& e) const { return e.index * n_ + e.sample; }
  // The choices response() returns, in order: all, or per prompt the n_best best.
  std::vector<size_t> returned_choices() const;
  // Records tokens and text on the choice; returns the chunk's logprobs (or null).
  nlohmann::ordered_json add_tokens(Choice& c, const std::vector<GeneratedToken>& toks);
  nlohmann::ordered_json logprobs_json(const std::vector<GeneratedToken>& toks, const std::vector<int64_t>& offsets,
                                       size_t from) const;
  nlohmann::ordered_json chunk(int64_t index, const std::string& text, nlohmann::ordered_json logprobs,
                               const nlohmann::ordered_json& finish) const;

  const CompletionRequest& req_;
  const ApiContext& ctx_;
  std::string id_;
  int64_t created_;
  int64_t n_;
  std::vector<Choice> choices_;
  int64_t finished_ = 0;
};

}  // namespace optforge::serve
