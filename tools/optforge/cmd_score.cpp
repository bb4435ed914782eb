// optforge score MODEL FILE: the log-probability of every token of a text given the tokens before
// it, and the text's perplexity (what users of alpa's and metaseq's servers did with
// echo + logprobs). --ids scores sequences of token ids instead (one JSON array per line, all in
// one batch); --dump-logits writes every position's logits as .npy, for the reference tests.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/atomic_file.h"
#include "model/runtime.h"
#include "model/sampling.h"
#include "model_options.h"
#include "tokenizer/bpe.h"
#include "tokenizer/token_label.h"
#include "tokenizer_options.h"
#include "util/error.h"

namespace optforge::cli {
namespace {

struct Options {
  TokenizerOptions tokenizer;
  RuntimeOptions runtime;
  std::string file, dump_logits;
  bool json = false, ids = false, left_pad = false;
  int64_t prefill = 0;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path == "-" ? "/dev/stdin" : path, std::ios::binary);
  if (!in) throw Error("cannot open", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::vector<int32_t>> read_sequences(const Options& o, const Tokenizer& tok) {
  const std::string text = read_all(o.file);
  if (!o.ids) return {tok.encode(text)};
  std::vector<std::vector<int32_t>> seqs;
  size_t start = 0, line = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    const std::string l = text.substr(start, end - start);
    start = end + 1;
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      seqs.push_back(nlohmann::json::parse(l).get<std::vector<int32_t>>());
    } catch (const std::exception& e) {
      throw Error(std::string("not a JSON array of token ids: ") + e.what(), o.file, "line " + std::to_string(line));
    }
    if (seqs.back().empty()) throw Error("empty sequence", o.file, "line " + std::to_string(line));
  }
  return seqs;
}

// A little-endian f32 .npy (format 1.0), C order.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& data) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ",";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string head = "\x93NUMPY\x01";
  head += '\0';
  head += char(header.size() & 0xff);
  head += char(header.size() >> 8);
  head += header;
  AtomicFile f(path);
  f.write(head);
  f.write(data.data(), data.size() * sizeof(float));
  f.commit();
}

void run(const Options& o) {
  const Tokenizer tok = load_tokenizer(o.tokenizer);
  const auto seqs = read_sequences(o, tok);
  auto rt = open_model(o.runtime);
  OptModel& model = *rt->model;
  const int64_t V = model.config().vocab, B = int64_t(seqs.size());

  // The batch as the model sees it: ragged, or left-padded with <pad> = 1 as HF batches are.
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  std::vector<SeqTokens> full;
  for (int64_t b = 0; b < B; ++b) {
    SeqTokens st{b, seqs[size_t(b)], {}};
    if (o.left_pad) {
      const size_t pad = longest - st.tokens.size();
      st.tokens.insert(st.tokens.begin(), pad, 1);
      st.mask.assign(longest, 1);
      std::fill_n(st.mask.begin(), pad, 0);
    }
    full.push_back(std::move(st));
  }
  KvCache cache = model.make_cache(B, int64_t(longest));

  // Run in chunks: the first `prefill` tokens at once (all if 0), then one token per step, so
  // the incremental path can be checked against the one-shot one.
  std::vector<std::vector<float>> logits(static_cast<size_t>(B));  // [real tokens, V] per sequence
  size_t done = 0;
  while (done < longest) {
    const size_t take = done == 0 && o.prefill <= 0 ? longest : done == 0 ? size_t(o.prefill) : 1;
    std::vector<SeqTokens> step;
    for (const SeqTokens& f : full) {
      if (done >= f.tokens.size()) continue;
      const size_t n = std::min(take, f.tokens.size() - done);
      SeqTokens st{f.seq, {f.tokens.begin() + int64_t(done), f.tokens.begin() + int64_t(done + n)}, {}};
      if (!f.mask.empty()) st.mask.assign(f.mask.begin() + int64_t(done), f.mask.begin() + int64_t(done + n));
      step.push_back(std::move(st));
    }
    const std::vector<float> out = model.forward(cache, step, OptModel::Logits::All);
    size_t row = 0;
    for (const SeqTokens& st : step)
      for (size_t i = 0; i < st.tokens.size(); ++i, ++row)
        if (st.mask.empty() || st.mask[i])
          logits[size_t(st.seq)].insert(logits[size_t(st.seq)].end(), out.begin() + int64_t(row) * V,
                                        out.begin() + int64_t(row + 1) * V);
    done += take;
  }

  if (!o.dump_logits.empty()) {  // [B, longest, V], real tokens left-aligned, zeros after
    std::vector<float> all(size_t(B) * longest * size_t(V), 0.0f);
    for (int64_t b = 0; b < B; ++b)
      std::copy(logits[size_t(b)].begin(), logits[size_t(b)].end(), all.begin() + b * int64_t(longest) * V);
    write_npy(o.dump_logits, {B, int64_t(longest), V}, all);
  }

  for (int64_t b = 0; b < B; ++b) {
    const auto& ids = seqs[size_t(b)];
    nlohmann::json tokens = nlohmann::json::array();
    double total = 0;
    if (!o.json) std::printf("%6s %7s %12s  %s\n", "pos", "id", "logprob", "token");
    for (size_t i = 0; i < ids.size(); ++i) {
      std::optional<float> lp;
      if (i > 0) lp = log_softmax(&logits[size_t(b)][(i - 1) * size_t(V)], V)[size_t(ids[i])];
      if (lp) total += *lp;
      // The token's name as generate --json and the server's logprobs give it: distinct ids never
      // print alike, a piece of a character shows its bytes (tokenizer/token_label.h).
      const std::string label = token_label(tok, ids[i]);
      if (o.json)
        tokens.push_back({{"id", ids[i]}, {"text", label}, {"logprob", lp ? nlohmann::json(*lp) : nlohmann::json()}});
      else
        std::printf("%6zu %7d %12s  %s\n", i, ids[i], lp ? std::to_string(*lp).c_str() : "-",
                    nlohmann::json(label).dump().c_str());
    }
    const size_t scored = ids.size() - 1;
    const double mean = scored ? total / double(scored) : 0.0;
    const double ppl = std::exp(-mean);
    if (o.json) {
      nlohmann::json j = {{"tokens", tokens},
                          {"tokens_scored", scored},
                          {"sum_logprob", total},
                          {"mean_logprob", mean},
                          {"perplexity", ppl}};
      std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%zu tokens scored, sum logprob %.4f, mean %.4f, perplexity %.4f\n", scored, total, mean, ppl);
    }
  }
}

}  // namespace

void register_score(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("score", "Per-token logprobs and perplexity of a text under an OPT checkpoint");
  add_model_argument(cmd, o->runtime);
  cmd->add_option("file", o->file, "Text file to score ('-' for stdin)")->required();
  cmd->add_flag("--json", o->json, "One JSON object per sequence");
  cmd->add_flag("--ids", o->ids, "FILE holds token ids: a JSON array per line, scored as one batch");
  add_tokenizer_options(cmd, o->tokenizer);
  add_runtime_options(cmd, o->runtime);
  // For checking the engine against references; hidden from --help.
  cmd->add_option("--dump-logits", o->dump_logits, "Write every position's logits [B, T, V] as .npy")->group("");
  cmd->add_option("--prefill", o->prefill, "Run the first N tokens at once, then one per step (KV cache)")->group("");
  cmd->add_flag("--left-pad", o->left_pad, "Batch with left padding and a mask, as HF does")->group("");
  cmd->callback([o] { run(*o); });
}

}  // namespace optforge::cli
