// Continuous (iteration-level) batching over one model and one paged KV cache. A single thread
// runs the model: each iteration it drops cancelled jobs, admits waiting jobs in FIFO order while
// batch slots and free cache blocks allow, then runs ONE forward step holding every new prompt
// (prefill) and every running sample's last token (decode), and samples each row. A job joins the
// batch at the next step after it arrives and leaves the step after it finishes; a cancelled job
// (its client went away) gives its slots and blocks back at the next iteration.
//
// Memory (vLLM's scheme): the cache is one pool of --kv-cache-tokens tokens in blocks of
// kKvBlockSize (model/kv_cache.h). A job is admitted when its prompt's blocks are free (not
// prompt + max_tokens); sequences take blocks as they grow and give them back when they end. When
// a decode step needs more blocks than are free, the newest running job is preempted: its blocks
// are freed and it goes back to the front of the queue, keeping its samples' state (tokens, RNG);
// re-admitted, each sample's cache is recomputed from its prompt and the tokens generated so far,
// and it continues as if nothing happened. The head of the queue waits until it fits (FIFO).
// Beam search jobs (spec.beams > 0) run alone: at the head of the queue a beam job waits until
// the running jobs have finished (nothing overtakes it), then runs to its end with `beams`
// sequences of the pool, every step its beams only; then the queue goes on. Simple and within
// the pool's budget, at the cost of the other requests' latency meanwhile.
// With prefix caching (vLLM's automatic prefix caching, on unless --no-prefix-caching), a prompt
// (or a recomputed sequence) starts from the cached blocks of its longest cached prefix and only
// the rest is computed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/opt.h"
#include "model/sample_decoder.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "tokenizer/bpe.h"

namespace optforge::serve {

struct SchedulerOptions {
  int64_t max_batch = 32;       // samples decoded together (cache sequences)
  int64_t kv_cache_tokens = 0;  // the KV cache pool in tokens (rounded up to blocks); 0: max_batch x context
  int64_t max_queue = 1024;     // waiting jobs beyond this are refused (429)
  bool prefix_caching = true;   // reuse cached KV blocks of earlier prompts (--no-prefix-caching)
};

class Scheduler {
 public:
  Scheduler(OptModel& model, const Tokenizer& tokenizer, SchedulerOptions options, Metrics& metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  int64_t context() const { return context_; }
  int64_t max_batch() const { return opt_.max_batch; }
  int64_t kv_budget() const { return total_blocks_ * kKvBlockSize; }  // the pool, in tokens

  // Queues the job, or throws ApiError: 400 when it could never run (prompt longer than the
  // context, n above --max-batch, a prompt needing more blocks than the pool, or n x (prompt +
  // max_tokens) more than the pool, so that it could not finish even alone), 429 when the queue
  // is full, 503 while shutting down.
  void submit(const std::shared_ptr<Job>& job);
  // Marks the job cancelled and wakes the scheduler; its slots are free after the next step.
  void cancel(const std::shared_ptr<Job>& job);
  // Stops admitting new submissions, lets queued and running jobs finish for up to `grace`,
  // then ends the rest with an Error event (503) and stops the thread.
  void shutdown(std::chrono::milliseconds grace);

 private:
  struct Sample {
    int64_t slot = -1;  // its cache sequence; -1 while it holds none (done, or preempted)
    std::unique_ptr<SampleDecoder> dec;
    std::chrono::steady_clock::time_point last_token;
    bool done = false;
    bool recompute = false;  // preempted after its prefill: its next step feeds dec->history()
  };
  struct Running {
    std::shared_ptr<Job> job;
    int64_t budget = 0;
    bool prefilled = false, first_token_seen = false;
    bool preempted = false;  // waiting to be re-admitted: holds no slots and no blocks
    std::vector<Sample> samples;
  };
  using Clock = std::chrono::steady_clock;

  void loop();
  void admit_locked();
  void drop_cancelled();
  void sweep();
  void step();
  void prefill_with_prompt_logprobs(Running& r);
  void after_prefill(Running& r, const float* last_logits);
  void advance(Running& r, Sample& s, const float* logits);
  void finish_sample(Running& r, Sample& s, const std::string& reason, std::string text);
  void fail(Running& r, int status, const std::string& message);
  void publish_gauges();
  int64_t budget_for(const JobSpec& spec) const;
  // scheduler_memory.cpp: block accounting and preemption.
  int64_t step_blocks(const Running& r) const;
  bool readmit_locked(Running& r, int64_t& free_blocks);
  void make_room();
  void preempt(Running& r);
  std::vector<int32_t> uncached(int64_t slot, const std::vector<int32_t>& tokens);
  // scheduler_beam.cpp: a beam search job, run to its end on the scheduler thread.
  void run_beam_job(const std::shared_ptr<Job>& job);

  OptModel& model_;
  TokenBytes token_bytes_;  // text_bytes(tokenizer): the samples' text
  SchedulerOptions opt_;
  Metrics& metrics_;
  int64_t context_ = 0, vocab_ = 0;
  int32_t eos_ = 2;  // the model config's eos_token_id: where samples stop
  KvCache cache_;
  int64_t total_blocks_ = 0;  // cache_'s pool (constant; read by submit on HTTP threads)

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mu_
  bool draining_ = false, abort_ = false;   // guarded by mu_
  std::vector<int64_t> free_slots_;         // guarded by mu_ (admission runs under it)
  std::shared_ptr<Job> beam_job_;           // admitted beam job, run next (admission sets it under mu_)
  std::list<Running> running_;              // scheduler thread only (admission adds under mu_); oldest first
  std::atomic<int64_t> running_count_{0};   // running_.size(), for shutdown's wait
  std::thread thread_;
};

}  // namespace optforge::serve
