// Beam search as transformers' `generate(num_beams=B, do_sample=False)` runs it (BeamSearchScorer
// and BeamHypotheses of transformers 4.40), so that its sequences and scores are comparable:
//
// - B beams run, each with its cumulative logprob (f32 sums of log-softmax of the raw logits;
//   no logits processor). Each step ranks every (beam, token) by beam score + logprob and takes
//   the candidates best first: one that ends a beam (</s>, or one whose text then contains a stop
//   sequence) becomes a finished hypothesis if its rank is below B, else is skipped; the others
//   become the next B running beams.
// - A finished hypothesis scores sum_logprobs / generated_len ** length_penalty, where
//   generated_len counts its generated tokens with the one that ended it (</s> too). B of them
//   are kept (the best).
// - early_stopping false (transformers' default): the search ends when the worst kept
//   hypothesis is at least the best candidate's sum / (tokens so far + 1) ** length_penalty;
//   true: as soon as B hypotheses are kept. At max_tokens the running beams join the
//   hypotheses (unless the search ended early), and the n best are returned, best first.
//
// Stop sequences are this project's extension (transformers has none): a candidate whose decoded
// text (HF's decode) contains a stop sequence ends its beam like </s> does, its text cut before
// the stop and its tokens (the last included) counted in its length. With a vocabulary, a step
// always finds B running beams among the ranked candidates; were all of them to end, Error.
//
// The beams live in a paged KvCache (model/kv_cache.h): when beams are reordered, a parent's
// first child keeps the parent's sequence, further children fork() it (its blocks shared,
// copied on write) into the sequences of parents that left no child.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/generate.h"
#include "model/opt.h"
#include "tokenizer/stream_decoder.h"

namespace optforge {

struct BeamOptions {
  int64_t beams = 2;  // num_beams (vLLM's best_of)
  int64_t n = 1;      // sequences returned, best first: 1 <= n <= beams (num_return_sequences)
  int64_t max_tokens = 16;
  double length_penalty = 1.0;
  bool early_stopping = false;    // transformers' bool semantics (not "never")
  std::vector<std::string> stop;  // matched on each beam's generated text; the match is cut off
  bool stop_at_eos = true;        // </s> (the config's eos_token_id) ends a beam
  bool echo = false;              // also return the prompt's tokens with their logprobs
  int64_t top_logprobs = 0;       // alternatives per token
};

struct BeamResult {
  Completion completion;  // tokens with logprobs (</s> not included), text, finish_reason "stop"/"length"
  double score = 0;       // sum of the tokens' logprobs / generated_len ** length_penalty
};

// Runs the search for `prompt` (token ids) in `cache` sequences `slots` (the first `beams` of them
// are used, each empty on entry, with room for the prompt and max_tokens; all are cleared on
// return). max_tokens is cut to what the context leaves after the prompt, as generate() does.
// `cancelled`, when set, is asked before each model step: true ends the search and returns {}.
// `token_bytes` may be empty only without stop sequences (then texts are empty). Returns n
// results, best first. Throws Error for an empty prompt, beams < 1, n outside [1, beams], fewer
// slots than beams, a prompt longer than the context, an empty stop sequence or stops without
// token_bytes (all before any model work); Error from the cache when its pool runs out.
std::vector<BeamResult> beam_search(OptModel& model, KvCache& cache, const std::vector<int64_t>& slots,
                                    const std::vector<int32_t>& prompt, const BeamOptions& opts,
                                    const TokenBytes& token_bytes, const std::function<bool()>& cancelled = {});

// The same in a cache of its own (what `optforge generate --beams` runs).
std::vector<BeamResult> beam_search(OptModel& model, const std::vector<int32_t>& prompt, const BeamOptions& opts,
                                    const TokenBytes& token_bytes);

}  // namespace optforge
