// A unit of work for the scheduler: one prompt with its sampling parameters and n samples, and
// the events it produces for the HTTP thread that waits on it. One HTTP request with several
// prompts submits several jobs that share one EventSink, so its events arrive in one queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "model/generate.h"
#include "model/sample_decoder.h"

namespace optforge::serve {

struct JobSpec {
  std::vector<int32_t> prompt;
  // sampling, max_tokens, n, stop, stop_at_eos, top_logprobs as generate() takes them;
  // `echo` here means "report the prompt's own logprobs" (echoing text is the API's business).
  GenerateOptions opts;
  SampleControls controls;    // min_tokens, penalties, logit_bias, logprobs: what the APIs add
  int64_t next_logprobs = 0;  // > 0: report the top-k of the distribution after the prompt (alpa /logprobs)
  int64_t index = 0;          // which prompt of its request
  // false: opts.max_tokens is the route's default (chat: the rest of the context), not asked
  // for, so the scheduler shortens it to what the KV cache pool can hold instead of refusing.
  bool max_tokens_given = true;
  // > 0: beam search with this many beams (model/beam_search.h) instead of sampling; opts.n
  // beams are returned, best first, as samples 0 .. n-1. opts.sampling and controls (but for
  // `logprobs`) do not apply; the API refuses requests that set them.
  int64_t beams = 0;
  double length_penalty = 1.0;
  bool early_stopping = false;
};

struct JobEvent {
  enum class Kind {
    Prompt,        // the prompt's tokens with logprobs (spec.opts.echo)
    NextLogprobs,  // spec.next_logprobs
    Token,         // one generated token of `sample`, and the text it made final (may be empty)
    Finish,        // `sample` is done: the rest of its text and finish_reason
    Error          // the job was refused or cancelled: status and message
  };
  Kind kind = Kind::Token;
  int64_t index = 0, sample = 0;
  std::vector<GeneratedToken> tokens;
  std::vector<TokenLogprob> next;
  std::string text, finish_reason;
  int status = 0;
};

// A queue of events, filled by the scheduler thread and drained by one HTTP thread.
class EventSink {
 public:
  void push(JobEvent e);
  // Whatever has arrived, waiting up to `timeout` for the first event.
  std::vector<JobEvent> wait(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> q_;
};

struct Job {
  JobSpec spec;
  std::shared_ptr<EventSink> sink;
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
  std::atomic<bool> cancelled{false};
};

}  // namespace optforge::serve
