#include "model/beam_search.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "model/sample_decoder.h"
#include "model/sampling.h"
#include "util/error.h"

namespace optforge {
namespace {

struct Beam {
  int64_t slot = -1;
  float score = 0;  // f32 like transformers' beam_scores, so sums round as theirs do
  std::vector<GeneratedToken> tokens;
  std::optional<StreamDecoder> text;  // only with stop sequences: to see a candidate complete one
};

struct Hypothesis {
  double score = 0;
  std::vector<GeneratedToken> tokens;
  bool ended = false;  // by </s> or a stop sequence (finish_reason "stop")
};

struct Candidate {
  float score;  // beam score + logprob
  int64_t beam;
  int32_t token;
};

// transformers' BeamHypotheses: the `beams` best finished hypotheses.
class Hypotheses {
 public:
  explicit Hypotheses(const BeamOptions& o) : o_(&o) {}
  void add(std::vector<GeneratedToken> tokens, float sum, int64_t generated_len, bool ended) {
    const double score = double(sum) / std::pow(double(generated_len), o_->length_penalty);
    if (int64_t(kept_.size()) >= o_->beams && score <= worst_) return;
    kept_.push_back({score, std::move(tokens), ended});
    if (int64_t(kept_.size()) > o_->beams) {
      // Drop the worst (the first of equal worsts, as Python's sorted() of (score, index) does).
      auto worst = std::min_element(kept_.begin(), kept_.end(),
                                    [](const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; });
      kept_.erase(worst);
      worst_ = std::min_element(kept_.begin(), kept_.end(), [](auto& a, auto& b) { return a.score < b.score; })->score;
    } else {
      worst_ = std::min(worst_, score);
    }
  }
  // `best_sum`: the best candidate's cumulative logprob; `generated_len`: tokens after this step.
  bool done(float best_sum, int64_t generated_len) const {
    if (int64_t(kept_.size()) < o_->beams) return false;
    if (o_->early_stopping) return true;
    return worst_ >= double(best_sum) / std::pow(double(generated_len), o_->length_penalty);
  }
  // Best first; among equal scores the later added first (transformers pops a stable sort's end).
  std::vector<Hypothesis> best(int64_t n) && {
    std::stable_sort(kept_.begin(), kept_.end(), [](auto& a, auto& b) { return a.score < b.score; });
    std::vector<Hypothesis> out;
    for (int64_t i = 0; i < n && !kept_.empty(); ++i) out.push_back(std::move(kept_.back())), kept_.pop_back();
    return out;
  }

 private:
  const BeamOptions* o_;
  std::vector<Hypothesis> kept_;
  double worst_ = 1e9;
};

// Every beam's `per_beam` likeliest tokens as candidates, best first (ties: lower beam, then
// lower id, as the flat index beam * V + id orders them). The top per_beam x beams of all beams'
// tokens are among them.
std::vector<Candidate> ranked(const std::vector<Beam>& beams, const std::vector<std::vector<float>>& lp, int64_t V,
                              int64_t per_beam) {
  std::vector<Candidate> out;
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (size_t b = 0; b < beams.size(); ++b) {
    const std::vector<float>& row = lp[b];
    std::iota(ids.begin(), ids.end(), 0);
    const int64_t k = std::min(per_beam, V);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t c) {
      return row[size_t(a)] > row[size_t(c)] || (row[size_t(a)] == row[size_t(c)] && a < c);
    });
    for (int64_t i = 0; i < k; ++i)
      out.push_back({beams[b].score + row[size_t(ids[size_t(i)])], int64_t(b), ids[size_t(i)]});
  }
  std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  return out;
}

// The beam extended by `token` (its decoder fed), as a new running beam or a hypothesis.
Beam extend(const Beam& parent, const Candidate& c, const std::vector<float>& lp, int64_t top) {
  Beam b;
  b.slot = parent.slot;
  b.score = c.score;
  b.tokens = parent.tokens;
  b.tokens.push_back({c.token, lp[size_t(c.token)], top_logprobs(lp, top)});
  b.text = parent.text;
  if (b.text) b.text->push(c.token);
  return b;
}

// Whether the beam's text (HF's decode: an unfinished character at the end as U+FFFD) contains a
// stop sequence. The stream decoder alone would wait while a longer stop that starts earlier
// could still complete; a beam ends at once.
bool contains_stop(const Beam& b) {
  if (!b.text) return false;
  StreamDecoder d = *b.text;
  d.finish();
  return d.stopped();
}

struct StepResult {
  std::vector<Beam> running;  // the next beams, their slots still the parents'
  std::vector<int64_t> parent;
  float best_sum = 0;
};

// One step of BeamSearchScorer.process: ranks the candidates, files the ending ones below rank
// B as hypotheses, keeps the first B others running.
StepResult choose(const std::vector<Beam>& beams, const std::vector<std::vector<float>>& lp, int64_t V,
                  int64_t generated_len, const BeamOptions& o, int32_t eos, Hypotheses& hyps) {
  for (int64_t per_beam = 2 * o.beams;; per_beam *= 2) {  // more only when stop sequences end many candidates
    StepResult r;
    Hypotheses trial = hyps;
    const std::vector<Candidate> cands = ranked(beams, lp, V, per_beam);
    r.best_sum = cands.front().score;
    for (size_t rank = 0; rank < cands.size() && int64_t(r.running.size()) < o.beams; ++rank) {
      const Candidate& c = cands[rank];
      const Beam& parent = beams[size_t(c.beam)];
      const bool at_eos = o.stop_at_eos && c.token == eos;
      Beam next = extend(parent, c, lp[size_t(c.beam)], o.top_logprobs);
      if (at_eos || contains_stop(next)) {
        if (int64_t(rank) >= o.beams) continue;  // as transformers: only the top B may finish
        if (at_eos) next.tokens.pop_back();      // </s> ends the beam, not part of its tokens
        trial.add(std::move(next.tokens), c.score, generated_len, true);
        continue;
      }
      r.running.push_back(std::move(next));
      r.parent.push_back(c.beam);
    }
    if (int64_t(r.running.size()) == o.beams) {
      hyps = std::move(trial);
      return r;
    }
    if (per_beam >= V) throw Error("beam search: every candidate token ends its beam");
  }
}

// Gives each new beam a cache sequence holding its parent's: a parent's first child keeps the
// parent's sequence; the sequences of childless parents (and unused ones) are cleared and take
// forks for the other children. Forks share blocks; only the written last block is copied.
void reorder(KvCache& cache, const std::vector<Beam>& old, StepResult& r, std::vector<int64_t> spare) {
  std::vector<bool> kept(old.size(), false);
  std::vector<bool> placed(r.running.size(), false);
  for (size_t j = 0; j < r.running.size(); ++j)
    if (!kept[size_t(r.parent[j])]) kept[size_t(r.parent[j])] = placed[j] = true;
  for (size_t p = 0; p < old.size(); ++p)
    if (!kept[p]) cache.clear(old[p].slot), spare.push_back(old[p].slot);
  for (size_t j = 0; j < r.running.size(); ++j) {
    if (placed[j]) continue;
    const int64_t slot = spare.back();
    spare.pop_back();
    cache.fork(old[size_t(r.parent[j])].slot, slot);
    r.running[j].slot = slot;
  }
}

// The returned completion: text through a fresh decoder (held-back text final now).
BeamResult finish(Hypothesis h, const std::vector<GeneratedToken>& prompt_lp, const BeamOptions& o,
                  const TokenBytes& token_bytes) {
  BeamResult out;
  out.score = h.score;
  Completion& c = out.completion;
  c.prompt = prompt_lp;
  bool stopped = false;
  if (token_bytes) {
    StreamDecoder d(token_bytes, o.stop);
    for (const GeneratedToken& t : h.tokens) c.text += d.push(t.id);
    c.text += d.finish();
    stopped = d.stopped();
  }
  c.tokens = std::move(h.tokens);
  c.finish_reason = h.ended || stopped ? "stop" : "length";
  return out;
}

void check(const std::vector<int32_t>& prompt, const BeamOptions& o, size_t slots, int64_t context,
           const TokenBytes& token_bytes) {
  if (prompt.empty()) throw Error("the prompt is empty");
  if (o.beams < 1) throw Error("beam search needs at least one beam");
  if (o.n < 1 || o.n > o.beams)
    throw Error("beam search returns n = 1 .. " + std::to_string(o.beams) + " sequences, not " + std::to_string(o.n));
  if (int64_t(slots) < o.beams) throw Error("beam search: fewer cache sequences than beams");
  if (int64_t(prompt.size()) > context)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " +
                std::to_string(context));
  if (!o.stop.empty() && !token_bytes) throw Error("stop sequences need a tokenizer");
  for (const std::string& s : o.stop)
    if (s.empty()) throw Error("a stop sequence is empty");
}

// The beams' sequences go back to the pool however the search ends (done, cancelled, thrown).
struct ClearOnExit {
  KvCache& cache;
  const std::vector<int64_t>& slots;
  ~ClearOnExit() {
    for (int64_t s : slots) cache.clear(s);
  }
};

}  // namespace

std::vector<BeamResult> beam_search(OptModel& model, KvCache& cache, const std::vector<int64_t>& slots,
                                    const std::vector<int32_t>& prompt, const BeamOptions& o,
                                    const TokenBytes& token_bytes, const std::function<bool()>& cancelled) {
  const int64_t V = model.config().vocab;
  check(prompt, o, slots.size(), model.config().max_positions, token_bytes);
  const int64_t budget =
      std::max<int64_t>(0, std::min(o.max_tokens, model.config().max_positions - int64_t(prompt.size())));
  const int32_t eos = int32_t(model.config().eos_token_id);
  const ClearOnExit clear_slots{cache, slots};
  std::vector<GeneratedToken> prompt_lp;
  std::vector<int64_t> spare(slots.rbegin(), slots.rend() - 1);
  std::vector<Beam> beams(1);
  beams[0].slot = slots[0];
  if (!o.stop.empty()) beams[0].text.emplace(token_bytes, o.stop);
  if (cancelled && cancelled()) return {};
  std::vector<float> logits =
      model.forward(cache, {{slots[0], prompt, {}}}, o.echo ? OptModel::Logits::All : OptModel::Logits::Last);
  if (o.echo) {
    prompt_lp = prompt_logprobs(prompt, logits.data(), V, o.top_logprobs);
    logits.erase(logits.begin(), logits.end() - V);
  }
  Hypotheses hyps(o);
  for (int64_t len = 1; len <= budget; ++len) {
    std::vector<std::vector<float>> lp;
    for (size_t b = 0; b < beams.size(); ++b) lp.push_back(log_softmax(logits.data() + int64_t(b) * V, V));
    StepResult r = choose(beams, lp, V, len, o, eos, hyps);
    if (hyps.done(r.best_sum, len)) break;  // as transformers: the running beams do not join
    if (len == budget) {
      for (Beam& b : r.running) hyps.add(std::move(b.tokens), b.score, len, false);
      break;
    }
    reorder(cache, beams, r, spare);
    spare.clear();
    beams = std::move(r.running);
    if (cancelled && cancelled()) return {};
    std::vector<SeqTokens> batch;
    for (const Beam& b : beams) batch.push_back({b.slot, {b.tokens.back().id}, {}});
    logits = model.forward(cache, batch, OptModel::Logits::Last);
  }
  if (budget == 0)
    for (int64_t i = 0; i < o.n; ++i) hyps.add({}, 0, 1, false);  // nothing to generate: empty beams
  std::vector<BeamResult> out;
  for (Hypothesis& h : std::move(hyps).best(o.n)) out.push_back(finish(std::move(h), prompt_lp, o, token_bytes));
  return out;
}

std::vector<BeamResult> beam_search(OptModel& model, const std::vector<int32_t>& prompt, const BeamOptions& opts,
                                    const TokenBytes& token_bytes) {
  const int64_t capacity =
      std::min<int64_t>(model.config().max_positions, int64_t(prompt.size()) + std::max<int64_t>(0, opts.max_tokens));
  KvCache cache = model.make_cache(std::max<int64_t>(1, opts.beams), std::max<int64_t>(1, capacity));
  std::vector<int64_t> slots(size_t(std::max<int64_t>(1, opts.beams)));
  std::iota(slots.begin(), slots.end(), 0);
  return beam_search(model, cache, slots, prompt, opts, token_bytes);
}

}  // namespace optforge
