#include "serve/openai_api.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>

#include "serve/api_error.h"
#include "serve/json_fields.h"
#include "serve/prompt_input.h"
#include "serve/request_fields.h"
#include "tokenizer/token_label.h"
#include "tokenizer/utf8.h"

namespace optforge::serve {
namespace {

using nlohmann::json;

// OpenAI's best_of: best_of samples per prompt, the n with the highest cumulative logprob
// returned. Generated like n = best_of samples (spec.opts.n); the writer picks the n.
void parse_best_of(Fields& f, const ApiContext& ctx, CompletionRequest& r) {
  GenerateOptions& o = r.spec.opts;
  if (!f.has("best_of")) return;
  const int64_t best_of = f.integer("best_of", o.n, 1, ctx.max_n);
  if (best_of < o.n) throw bad_request("best_of must be greater than or equal to n", "best_of");
  if (best_of == o.n) return;
  // As OpenAI: the best cannot be known before every sample is complete.
  if (r.stream) throw bad_request("best_of > n cannot be used with stream", "best_of");
  r.n_best = o.n;
  o.n = best_of;
}

// What beam search leaves out must not be set: it would be silently ignored otherwise.
void refuse_for_beams(bool set, const char* field, const std::string& why) {
  if (set) throw bad_request(std::string(field) + " " + why + " when using beam search", field);
}

// vLLM's beam search extension: use_beam_search with best_of beams (default n; at least 2, as
// vLLM), n returned best first, length_penalty and early_stopping (transformers' bool meaning).
// Deterministic: temperature 0 or absent, top_p 1, top_k 0, no penalties, biases or min_tokens,
// no stream (400 otherwise, as vLLM refuses them). Returns false without use_beam_search, after
// refusing length_penalty / early_stopping there (vLLM does too).
bool parse_beam_search(Fields& f, const ApiContext& ctx, CompletionRequest& r) {
  const bool beams = f.boolean("use_beam_search", false);
  const double length_penalty = f.number("length_penalty", 1.0, -100.0, 100.0);
  const bool early_stopping = f.boolean("early_stopping", false);
  if (!beams) {
    refuse_for_beams(length_penalty != 1.0, "length_penalty", "only applies");
    refuse_for_beams(early_stopping, "early_stopping", "only applies");
    return false;
  }
  GenerateOptions& o = r.spec.opts;
  const SampleControls& c = r.spec.controls;
  refuse_for_beams(r.stream, "stream", "cannot be used");
  refuse_for_beams(f.has("temperature") && o.sampling.temperature != 0, "temperature", "must be 0");
  refuse_for_beams(o.sampling.top_p != 1.0f, "top_p", "must be 1");
  refuse_for_beams(o.sampling.top_k != 0, "top_k", "must be 0");
  refuse_for_beams(o.sampling.repetition_penalty != 1.0f, "repetition_penalty", "must be 1");
  refuse_for_beams(c.presence_penalty != 0, "presence_penalty", "must be 0");
  refuse_for_beams(c.frequency_penalty != 0, "frequency_penalty", "must be 0");
  refuse_for_beams(!c.logit_bias.empty(), "logit_bias", "cannot be used");
  refuse_for_beams(c.min_tokens != 0, "min_tokens", "must be 0");
  const int64_t best_of = f.integer("best_of", o.n, 1, ctx.max_n);
  if (best_of < o.n) throw bad_request("best_of must be greater than or equal to n", "best_of");
  refuse_for_beams(best_of < 2, "best_of", "must be greater than 1");
  o.sampling.temperature = 0;
  r.spec.beams = best_of;
  r.spec.length_penalty = length_penalty;
  r.spec.early_stopping = early_stopping;
  return true;
}

}  // namespace

std::string new_completion_id() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(random_seed());
  std::string id = "cmpl-";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

CompletionRequest parse_openai_completion(const json& body, const ApiContext& ctx, bool strict) {
  Fields f(body);
  CompletionRequest r;
  check_model(f, ctx, strict);
  // OpenAI's default prompt is <|endoftext|>: a new document, which for OPT is </s> alone.
  if (const json* p = f.raw("prompt")) {
    PromptLimits lim;
    lim.vocab = ctx.vocab;
    r.prompts = parse_prompts(*p, *ctx.tok, lim);
  } else {
    r.prompts = {{ctx.tok->bos_id()}};
  }

  GenerateOptions& o = r.spec.opts;
  // OpenAI's default of 16, within --max-tokens-limit: only a number asked for is refused.
  o.max_tokens =
      f.has("max_tokens") ? f.integer("max_tokens", 16, 0, INT64_MAX) : std::min<int64_t>(16, ctx.max_tokens_limit);
  check_max_tokens_limit(o.max_tokens, ctx, "max_tokens");
  check_context(r.prompts, o.max_tokens, ctx, "max_tokens");
  parse_sampling_fields(f, ctx, r);
  if (!parse_beam_search(f, ctx, r)) parse_best_of(f, ctx, r);
  r.logprobs = f.has("logprobs") ? f.integer("logprobs", 0, 0, 5) : -1;
  r.echo = f.boolean("echo", false);
  o.echo = r.echo && r.logprobs >= 0;  // the prompt's own logprobs are only needed then
  o.top_logprobs = std::max<int64_t>(0, r.logprobs);
  // Ranking best_of samples needs each sampled token's logprob, asked for or not.
  r.spec.controls.logprobs = r.logprobs >= 0 || r.n_best > 0;
  if (const json* s = f.raw("suffix")) {
    if (!s->is_string()) throw bad_request(type_message(*s, "string", "suffix"), "suffix");
    if (!s->get<std::string>().empty()) throw bad_request("suffix is not supported: OPT only continues text", "suffix");
  }
  if (strict) f.reject_unknown();
  return r;
}

// ---- responses

using ojson = nlohmann::ordered_json;

CompletionWriter::CompletionWriter(const CompletionRequest& req, const ApiContext& ctx, std::string id, int64_t created)
    : req_(req),
      ctx_(ctx),
      id_(std::move(id)),
      created_(created),
      n_(req.spec.opts.n),
      choices_(req.prompts.size() * size_t(req.spec.opts.n), Choice(*ctx.tok)) {
  // Echo without logprobs: the prompt's text leads every choice from the start.
  if (req.echo && req.logprobs < 0)
    for (size_t i = 0; i < choices_.size(); ++i) choices_[i].text = ctx_.tok->decode_text(req.prompts[i / size_t(n_)]);
}

ojson CompletionWriter::logprobs_json(const std::vector<GeneratedToken>& toks, const std::vector<int64_t>& offsets,
                                      size_t from) const {
  ojson tokens = ojson::array(), lps = ojson::array(), tops = ojson::array(), offs = ojson::array();
  for (size_t i = from; i < toks.size(); ++i) {
    const GeneratedToken& t = toks[i];
    tokens.push_back(token_label(*ctx_.tok, t.id));
    lps.push_back(t.logprob ? ojson(*t.logprob) : ojson(nullptr));
    if (t.logprob) {
      ojson top = ojson::object();
      for (const TokenLogprob& a : t.top) top[token_label(*ctx_.tok, a.id)] = a.logprob;  // labels differ per id
      tops.push_back(top);
    } else {
      tops.push_back(nullptr);
    }
    offs.push_back(offsets[i]);
  }
  return {{"tokens", tokens},
          {"token_logprobs", lps},
          {"top_logprobs", req_.logprobs > 0 ? tops : ojson(nullptr)},
          {"text_offset", offs}};
}

ojson CompletionWriter::add_tokens(Choice& c, const std::vector<GeneratedToken>& toks) {
  const size_t from = c.tokens.size();
  for (const GeneratedToken& t : toks) {
    c.tokens.push_back(t);
    // As OpenAI counts: the characters complete before the token (a token that ends inside a
    // character adds nothing until the token that completes it).
    c.offsets.push_back(c.chars);
    c.chars += utf8_length(c.decoder.push(t.id));
  }
  return logprobs_json(c.tokens, c.offsets, from);
}

ojson CompletionWriter::chunk(int64_t index, const std::string& text, ojson logprobs, const ojson& finish) const {
  return {{"id", id_},
          {"object", "text_completion"},
          {"created", created_},
          {"model", ctx_.model_id},
          {"choices",
           ojson::array(
               {{{"text", text}, {"index", index}, {"logprobs", std::move(logprobs)}, {"finish_reason", finish}}})}};
}

std::vector<ojson> CompletionWriter::start_chunks() {
  std::vector<ojson> out;
  if (req_.echo && req_.logprobs < 0)
    for (size_t i = 0; i < choices_.size(); ++i) out.push_back(chunk(int64_t(i), choices_[i].text, nullptr, nullptr));
  return out;
}

std::vector<ojson> CompletionWriter::chunks(const JobEvent& e) {
  std::vector<ojson> out;
  switch (e.kind) {
    case JobEvent::Kind::Prompt: {
      const std::string text = ctx_.tok->decode_text(req_.prompts[size_t(e.index)]);
      for (int64_t j = 0; j < n_; ++j) {
        Choice& c = choices_[size_t(e.index * n_ + j)];
        ojson lp = add_tokens(c, e.tokens);
        c.chars += utf8_length(c.decoder.finish());  // the prompt's text ends here, as `text` does
        c.text += text;
        out.push_back(chunk(e.index * n_ + j, text, std::move(lp), nullptr));
      }
      break;
    }
    case JobEvent::Kind::Token: {
      Choice& c = choices_[size_t(choice_index(e))];
      c.generated += int64_t(e.tokens.size());
      for (const GeneratedToken& t : e.tokens) c.cumulative_logprob += t.logprob.value_or(0.0f);
      ojson lp = req_.logprobs >= 0 ? add_tokens(c, e.tokens) : ojson(nullptr);
      c.text += e.text;
      out.push_back(chunk(choice_index(e), e.text, std::move(lp), nullptr));
      break;
    }
    case JobEvent::Kind::Finish: {
      Choice& c = choices_[size_t(choice_index(e))];
      c.text += e.text;
      c.finish_reason = e.finish_reason;
      ++finished_;
      out.push_back(chunk(choice_index(e), e.text, nullptr, e.finish_reason));
      break;
    }
    case JobEvent::Kind::NextLogprobs:
    case JobEvent::Kind::Error: break;
  }
  return out;
}

void CompletionWriter::collect(const JobEvent& e) { (void)chunks(e); }

ojson CompletionWriter::usage() const {
  int64_t completion = 0;
  for (const Choice& c : choices_) completion += c.generated;
  return usage_json(req_.prompts, completion);
}

ojson CompletionWriter::usage_chunk() const {
  return usage_chunk_json(id_, "text_completion", created_, ctx_.model_id, usage());
}

std::vector<size_t> CompletionWriter::returned_choices() const {
  std::vector<size_t> out(choices_.size());
  std::iota(out.begin(), out.end(), size_t(0));
  if (req_.n_best == 0) return out;
  out.clear();
  for (size_t p = 0; p < req_.prompts.size(); ++p) {
    std::vector<size_t> own(static_cast<size_t>(n_));
    std::iota(own.begin(), own.end(), p * size_t(n_));
    std::stable_sort(own.begin(), own.end(), [&](size_t a, size_t b) {
      return choices_[a].cumulative_logprob > choices_[b].cumulative_logprob;
    });
    out.insert(out.end(), own.begin(), own.begin() + req_.n_best);
  }
  return out;
}

ojson CompletionWriter::response() const {
  ojson choices = ojson::array();
  const std::vector<size_t> returned = returned_choices();
  for (size_t i = 0; i < returned.size(); ++i) {
    const Choice& c = choices_[returned[i]];
    choices.push_back({{"text", c.text},
                       {"index", i},
                       {"logprobs", req_.logprobs >= 0 ? logprobs_json(c.tokens, c.offsets, 0) : ojson(nullptr)},
                       {"finish_reason", c.finish_reason}});
  }
  return {{"id", id_},           {"object", "text_completion"},
          {"created", created_}, {"model", ctx_.model_id},
          {"choices", choices},  {"usage", usage()}};
}

}  // namespace optforge::serve
