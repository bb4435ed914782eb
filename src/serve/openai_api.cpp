#include "serve/openai_api.h"

#include <cstdint>
#include <random>

#include "serve/api_error.h"
#include "serve/json_fields.h"
#include "serve/prompt_input.h"
#include "tokenizer/token_label.h"
#include "tokenizer/utf8.h"

namespace optforge::serve {
namespace {

using nlohmann::json;

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

std::vector<std::string> parse_stop(Fields& f) {
  const json* v = f.raw("stop");
  std::vector<std::string> stops;
  if (!v) return stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 4)
      throw bad_request("at most 4 stop sequences are allowed; got " + std::to_string(v->size()), "stop");
    for (const auto& s : *v) {
      if (!s.is_string()) throw bad_request(type_message(s, "string", "stop"), "stop");
      stops.push_back(s.get<std::string>());
    }
  } else {
    throw bad_request(type_message(*v, "string or array", "stop"), "stop");
  }
  std::erase_if(stops, [](const std::string& s) { return s.empty(); });  // an empty stop would end every text at once
  return stops;
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(Fields& f, int64_t vocab) {
  std::vector<std::pair<int32_t, float>> out;
  const json* v = f.raw("logit_bias");
  if (!v) return out;
  if (!v->is_object()) throw bad_request(type_message(*v, "object", "logit_bias"), "logit_bias");
  for (auto it = v->begin(); it != v->end(); ++it) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(it.key(), &used);
    } catch (const std::exception&) { used = 0; }
    if (used != it.key().size() || id < 0 || id >= vocab)
      throw bad_request("logit_bias: '" + it.key() + "' is not a token id of this model", "logit_bias");
    if (!it->is_number() || it->get<double>() < -100 || it->get<double>() > 100)
      throw bad_request("logit_bias: the bias of token " + it.key() + " must be a number between -100 and 100",
                        "logit_bias");
    out.emplace_back(int32_t(id), it->get<float>());
  }
  return out;
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
  if (const json* m = f.raw("model")) {
    if (!m->is_string()) throw bad_request(type_message(*m, "string", "model"), "model");
    if (strict && m->get<std::string>() != ctx.model_id)
      throw ApiError(
          404, "The model `" + m->get<std::string>() + "` does not exist. This server serves `" + ctx.model_id + "`.",
          "model", "model_not_found");
  } else if (strict) {
    throw bad_request("you must provide a model parameter", "model");
  }
  // OpenAI's default prompt is <|endoftext|>: a new document, which for OPT is </s> alone.
  if (const json* p = f.raw("prompt")) {
    PromptLimits lim;
    lim.vocab = ctx.vocab;
    r.prompts = parse_prompts(*p, *ctx.tok, lim);
  } else {
    r.prompts = {{ctx.tok->bos_id()}};
  }

  GenerateOptions& o = r.spec.opts;
  o.max_tokens = f.integer("max_tokens", 16, 0, INT64_MAX);
  if (o.max_tokens > ctx.max_tokens_limit)
    throw bad_request("max_tokens is " + std::to_string(o.max_tokens) + "; this server allows at most " +
                          std::to_string(ctx.max_tokens_limit),
                      "max_tokens");
  for (const auto& p : r.prompts) {
    const int64_t total = int64_t(p.size()) + o.max_tokens;
    if (total > ctx.context)
      throw bad_request("This model's maximum context length is " + std::to_string(ctx.context) +
                            " tokens, however you requested " + std::to_string(total) + " tokens (" +
                            std::to_string(p.size()) + " in your prompt; " + std::to_string(o.max_tokens) +
                            " for the completion). Please reduce your prompt; or completion length.",
                        p.size() > size_t(ctx.context) ? "prompt" : "max_tokens");
  }
  o.sampling.temperature = float(f.number("temperature", 1.0, 0.0, 2.0));
  o.sampling.top_p = float(f.number("top_p", 1.0, 0.0, 1.0));
  o.sampling.top_k = f.integer("top_k", 0, 0, ctx.vocab);                                   // extension (HF's), 0 = off
  o.sampling.repetition_penalty = float(f.number("repetition_penalty", 1.0, 0.01, 100.0));  // extension
  o.sampling.seed = f.has("seed") ? uint64_t(f.integer("seed", 0, INT64_MIN, INT64_MAX)) : random_seed();
  o.n = f.integer("n", 1, 1, ctx.max_n);
  if (f.has("best_of")) {
    const int64_t best_of = f.integer("best_of", o.n, 1, ctx.max_n);
    if (best_of < o.n) throw bad_request("best_of must be greater than or equal to n", "best_of");
    if (best_of != o.n)
      throw bad_request("best_of > n (ranking samples by likelihood) is not supported by this server", "best_of");
  }
  o.stop = parse_stop(f);
  o.stop_at_eos = !f.boolean("ignore_eos", false);                        // extension
  r.spec.controls.min_tokens = f.integer("min_tokens", 0, 0, INT64_MAX);  // extension (alpa, metaseq)
  r.spec.controls.presence_penalty = float(f.number("presence_penalty", 0.0, -2.0, 2.0));
  r.spec.controls.frequency_penalty = float(f.number("frequency_penalty", 0.0, -2.0, 2.0));
  r.spec.controls.logit_bias = parse_logit_bias(f, ctx.vocab);
  r.stream = f.boolean("stream", false);
  if (const json* so = f.raw("stream_options")) {
    if (!r.stream)
      throw bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
    if (!so->is_object()) throw bad_request(type_message(*so, "object", "stream_options"), "stream_options");
    Fields sf(*so);
    r.include_usage = sf.boolean("include_usage", false);
    sf.reject_unknown();
  }
  r.logprobs = f.has("logprobs") ? f.integer("logprobs", 0, 0, 5) : -1;
  r.echo = f.boolean("echo", false);
  o.echo = r.echo && r.logprobs >= 0;  // the prompt's own logprobs are only needed then
  o.top_logprobs = std::max<int64_t>(0, r.logprobs);
  r.spec.controls.logprobs = r.logprobs >= 0;
  if (const json* s = f.raw("suffix")) {
    if (!s->is_string()) throw bad_request(type_message(*s, "string", "suffix"), "suffix");
    if (!s->get<std::string>().empty()) throw bad_request("suffix is not supported: OPT only continues text", "suffix");
  }
  (void)f.string("user", "");
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
  int64_t prompt = 0, completion = 0;
  for (const auto& p : req_.prompts) prompt += int64_t(p.size());
  for (const Choice& c : choices_) completion += c.generated;
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

ojson CompletionWriter::usage_chunk() const {
  return {{"id", id_},
          {"object", "text_completion"},
          {"created", created_},
          {"model", ctx_.model_id},
          {"choices", ojson::array()},
          {"usage", usage()}};
}

ojson CompletionWriter::response() const {
  ojson choices = ojson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
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
