// optforge generate MODEL --prompt "...": runs OPT on the CPU and streams the completion to the
// terminal; --json prints token ids, text and per-token logprobs instead (and timings, which
// bench/inference.sh reads).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "kernels/cpu/threads.h"
#include "model/beam_search.h"
#include "model/generate.h"
#include "model/runtime.h"
#include "model_options.h"
#include "tokenizer/bpe.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/token_label.h"
#include "tokenizer_options.h"
#include "util/error.h"

namespace optforge::cli {
namespace {

struct Options {
  TokenizerOptions tokenizer;
  RuntimeOptions runtime;
  std::string prompt, prompt_ids;
  int64_t max_tokens = 16, n = 1, top_logprobs = -1;
  float temperature = 1.0f, top_p = 1.0f, repetition_penalty = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool echo = false, json = false, ignore_eos = false;
  int64_t beams = 0;  // > 0: beam search (model/beam_search.h) instead of sampling
  double length_penalty = 1.0;
  bool early_stopping = false;
  const CLI::Option* temperature_option = nullptr;  // whether --temperature was given (--beams: only 0)
};

// "2,31414,232" or "[2, 31414, 232]"
std::vector<int32_t> parse_ids(std::string s) {
  for (char& c : s)
    if (c == '[' || c == ']' || c == ',') c = ' ';
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(s.substr(i), &used);
    } catch (const std::exception&) { throw Error("--prompt-ids: '" + s.substr(i, 16) + "' is not a token id"); }
    ids.push_back(int32_t(v));
    i += used;
  }
  return ids;
}

// Text as the JSON output has it (valid UTF-8, HF's decode), NUL bytes included.
void write_text(std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); }

nlohmann::json token_json(const GeneratedToken& t, const Tokenizer& tok) {
  nlohmann::json j = {{"id", t.id}, {"text", token_label(tok, t.id)}};
  j["logprob"] = t.logprob ? nlohmann::json(*t.logprob) : nlohmann::json(nullptr);
  if (!t.top.empty()) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& a : t.top) {
      top.push_back({{"id", a.id}, {"text", token_label(tok, a.id)}, {"logprob", a.logprob}});
    }
    j["top_logprobs"] = top;
  }
  return j;
}

// The choices' JSON shared by sampling and beam search; `scores`: the beams' (empty when sampling).
nlohmann::json choices_json(const std::vector<Completion>& completions, const std::vector<double>& scores,
                            const Options& o, const Tokenizer& tok, const std::vector<int32_t>& prompt) {
  nlohmann::json choices = nlohmann::json::array();
  for (size_t i = 0; i < completions.size(); ++i) {
    const Completion& c = completions[i];
    std::vector<int32_t> ids;
    nlohmann::json tokens = nlohmann::json::array();
    for (const auto& p : c.prompt) tokens.push_back(token_json(p, tok));
    for (const auto& g : c.tokens) {
      ids.push_back(g.id);
      tokens.push_back(token_json(g, tok));
    }
    choices.push_back({{"index", i},
                       {"ids", ids},
                       {"text", (o.echo ? tok.decode_text(prompt) : "") + c.text},
                       {"finish_reason", c.finish_reason},
                       {"tokens", tokens}});
    if (i < scores.size()) choices.back()["score"] = scores[i];
  }
  return choices;
}

// --beams: transformers' beam search; the n best beams, best first (no streaming: the best beam
// is known only at the end).
void run_beams(const Options& o, const Tokenizer& tok, const std::vector<int32_t>& prompt, OptModel& model) {
  const bool temperature_set = o.temperature_option && o.temperature_option->count() > 0 && o.temperature != 0;
  if (temperature_set || o.top_k != 0 || o.top_p != 1.0f || o.repetition_penalty != 1.0f)
    throw Error(
        "--beams is deterministic: --temperature (but 0), --top-k, --top-p and --repetition-penalty do not apply");
  BeamOptions b;
  b.beams = o.beams;
  b.n = o.n;
  b.max_tokens = o.max_tokens;
  b.length_penalty = o.length_penalty;
  b.early_stopping = o.early_stopping;
  b.stop = o.stop;
  b.stop_at_eos = !o.ignore_eos;
  b.echo = o.echo;
  b.top_logprobs = std::max<int64_t>(0, o.top_logprobs);
  std::vector<Completion> completions;
  std::vector<double> scores;
  for (BeamResult& r : beam_search(model, prompt, b, text_bytes(tok))) {
    completions.push_back(std::move(r.completion));
    scores.push_back(r.score);
  }
  if (!o.json) {
    for (size_t i = 0; i < completions.size(); ++i) {
      std::printf("--- beam %zu (score %.6f, %s)\n", i, scores[i], completions[i].finish_reason.c_str());
      write_text((o.echo ? tok.decode_text(prompt) : "") + completions[i].text + "\n");
    }
    return;
  }
  nlohmann::json out = {{"model", o.runtime.model}, {"prompt_ids", prompt}};
  out["choices"] = choices_json(completions, scores, o, tok, prompt);
  std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

void run(const Options& o) {
  if (o.prompt.empty() == o.prompt_ids.empty()) throw Error("give exactly one of --prompt and --prompt-ids");
  const Tokenizer tok = load_tokenizer(o.tokenizer);
  const std::vector<int32_t> prompt = o.prompt_ids.empty() ? tok.encode(o.prompt) : parse_ids(o.prompt_ids);

  auto rt = open_model(o.runtime);
  if (o.beams > 0) return run_beams(o, tok, prompt, *rt->model);
  if (o.length_penalty != 1.0 || o.early_stopping)
    throw Error("--length-penalty and --early-stopping only apply with --beams");
  GenerateOptions g;
  g.sampling = {o.temperature, o.top_k, o.top_p, o.repetition_penalty, o.seed};
  g.max_tokens = o.max_tokens;
  g.n = o.n;
  g.stop = o.stop;
  g.stop_at_eos = !o.ignore_eos;
  g.echo = o.echo;
  g.top_logprobs = std::max<int64_t>(0, o.top_logprobs);

  // Streams one sample's text as it becomes final; with several samples, prints each at the end.
  const bool stream = !o.json && o.n == 1;
  GenerateCallbacks cb;
  if (stream) {
    if (o.echo) write_text(tok.decode_text(prompt));
    cb.on_text = [](int64_t, std::string_view text) {
      write_text(text);
      std::fflush(stdout);
    };
  }
  GenerateStats stats;
  auto completions = generate(*rt->model, prompt, g, text_bytes(tok), cb, &stats);

  if (!o.json) {
    if (stream) {
      std::fputc('\n', stdout);
    } else {
      for (size_t i = 0; i < completions.size(); ++i) {
        std::printf("--- sample %zu (%s)\n", i, completions[i].finish_reason.c_str());
        write_text((o.echo ? tok.decode_text(prompt) : "") + completions[i].text + "\n");
      }
    }
    return;
  }
  nlohmann::json out = {{"model", o.runtime.model}, {"prompt_ids", prompt}};
  out["choices"] = choices_json(completions, {}, o, tok, prompt);
  // threads: the worker count; kernels: the backend's description (oneDNN's ISA and the matmul
  // implementations it chose), which bench/inference.sh prints.
  out["timing"] = {{"threads", cpu::threads()},
                   {"kernels", rt->backend->name()},
                   {"prompt_tokens", stats.prompt_tokens},
                   {"prompt_seconds", stats.prompt_seconds},
                   {"decode_steps", stats.decode_steps},
                   {"decode_tokens", stats.decode_tokens},
                   {"decode_seconds", stats.decode_seconds}};
  // Texts and token labels are valid UTF-8 already; `replace` only guards the model's path.
  std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("generate", "Generate text with an OPT checkpoint on the CPU");
  add_model_argument(cmd, o->runtime);
  cmd->add_option("--prompt", o->prompt, "Prompt text (encoded with </s> first, as OPT was trained)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids, used as given: \"2,31414,232\"");
  cmd->add_option("--max-tokens", o->max_tokens, "Tokens to generate at most")->capture_default_str();
  o->temperature_option =
      cmd->add_option("--temperature", o->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", o->repetition_penalty, "HF/CTRL repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed (sample i uses its own stream)")->capture_default_str();
  cmd->add_option("--stop", o->stop, "Stop sequence (repeatable); the text is cut before it");
  cmd->add_option("--n", o->n, "Number of samples of the prompt")->capture_default_str();
  cmd->add_flag("--echo", o->echo, "Include the prompt in the output (with its logprobs in --json)");
  cmd->add_flag("--json", o->json, "Print ids, text and per-token logprobs as JSON");
  cmd->add_option("--top-logprobs", o->top_logprobs, "With --json: the K most likely alternatives per token");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep going past </s>");
  cmd->add_option("--beams", o->beams, "Beam search with this many beams (transformers' num_beams); --n best returned")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--length-penalty", o->length_penalty, "With --beams: score = logprob sum / length ** this")
      ->capture_default_str();
  cmd->add_flag("--early-stopping", o->early_stopping, "With --beams: stop once --beams hypotheses are finished");
  add_tokenizer_options(cmd, o->tokenizer);
  add_runtime_options(cmd, o->runtime);
  cmd->callback([o] { run(*o); });
}

}  // namespace optforge::cli
