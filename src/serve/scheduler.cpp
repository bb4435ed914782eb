#include "serve/scheduler.h"

#include <algorithm>

#include "serve/api_error.h"
#include "util/error.h"

namespace optforge::serve {
namespace {

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The pool: --kv-cache-tokens rounded up to whole blocks; by default max_batch full contexts
// (what the cache held before it was paged).
int64_t pool_blocks(const SchedulerOptions& o, int64_t context) {
  return kv_blocks_for(o.kv_cache_tokens > 0 ? o.kv_cache_tokens : std::max<int64_t>(1, o.max_batch) * context);
}

}  // namespace

Scheduler::Scheduler(OptModel& model, const Tokenizer& tokenizer, SchedulerOptions options, Metrics& metrics)
    : model_(model),
      token_bytes_(text_bytes(tokenizer)),
      opt_(options),
      metrics_(metrics),
      context_(model.config().max_positions),
      vocab_(model.config().vocab),
      eos_(int32_t(model.config().eos_token_id)),
      // Any sequence may grow to a full context; the pool bounds them together. Its pages are only
      // touched as blocks are first used, so the resident size follows the peak use.
      cache_(model.make_cache(std::max<int64_t>(1, options.max_batch), model.config().max_positions,
                              pool_blocks(options, model.config().max_positions))),
      total_blocks_(cache_.blocks().total()) {
  if (opt_.max_batch < 1) throw Error("--max-batch must be at least 1");
  cache_.set_prefix_caching(opt_.prefix_caching);
  for (int64_t s = opt_.max_batch - 1; s >= 0; --s) free_slots_.push_back(s);
  publish_gauges();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

int64_t Scheduler::budget_for(const JobSpec& spec) const {
  return std::max<int64_t>(0, std::min(spec.opts.max_tokens, context_ - int64_t(spec.prompt.size())));
}

void Scheduler::submit(const std::shared_ptr<Job>& job) {
  JobSpec& s = job->spec;
  const int64_t P = int64_t(s.prompt.size());
  if (P == 0) throw bad_request("the prompt is empty", "prompt");
  if (P > context_)
    throw bad_request("the prompt has " + std::to_string(P) + " tokens; this model's maximum context length is " +
                          std::to_string(context_) + " tokens",
                      "prompt");
  if (s.opts.n > opt_.max_batch)
    throw bad_request("n = " + std::to_string(s.opts.n) + " is more than the server's batch size (" +
                          std::to_string(opt_.max_batch) + ")",
                      "n");
  if (s.beams > opt_.max_batch)
    throw bad_request("best_of = " + std::to_string(s.beams) + " beams are more than the server's batch size (" +
                          std::to_string(opt_.max_batch) + ")",
                      "best_of");
  const std::string pool = std::to_string(total_blocks_) + " blocks of " + std::to_string(kKvBlockSize) +
                           " tokens (--kv-cache-tokens " + std::to_string(kv_budget()) + ")";
  if (kv_blocks_for(P) > total_blocks_)
    throw bad_request("the prompt has " + std::to_string(P) + " tokens, " + std::to_string(kv_blocks_for(P)) +
                          " KV cache blocks; the server's KV cache holds " + pool,
                      "prompt");
  // Alone with the whole pool it must be able to finish, or preemption could never make room. A
  // default max_tokens (not asked for) is shortened to what the pool holds instead.
  const int64_t sequences = std::max(s.opts.n, s.beams);
  if (!s.max_tokens_given && sequences * kv_blocks_for(P + budget_for(s)) > total_blocks_)
    s.opts.max_tokens = std::max<int64_t>(0, (total_blocks_ / sequences) * kKvBlockSize - P);
  const int64_t alone = sequences * kv_blocks_for(P + budget_for(s));
  if (alone > total_blocks_)
    throw bad_request("the request needs " + std::to_string(alone) + " KV cache blocks to finish (" +
                      (s.beams > 0 ? "best_of" : "n") + " x (prompt + max_tokens)); the server's KV cache holds " +
                      pool);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || abort_) throw ApiError(503, "the server is shutting down");
    if (int64_t(queue_.size()) >= opt_.max_queue)
      throw ApiError(429, "the server is busy: " + std::to_string(queue_.size()) + " requests are waiting");
    queue_.push_back(job);
  }
  cv_.notify_all();
}

void Scheduler::cancel(const std::shared_ptr<Job>& job) {
  job->cancelled.store(true);
  cv_.notify_all();
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  const auto deadline = Clock::now() + grace;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() && running_count_.load() == 0) break;
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    abort_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return abort_ || !queue_.empty() || !running_.empty(); });
      if (abort_) {
        for (auto& job : queue_) {
          JobEvent e{JobEvent::Kind::Error};
          e.index = job->spec.index, e.status = 503, e.text = "the server is shutting down";
          job->sink->push(std::move(e));
        }
        queue_.clear();
        lock.unlock();
        for (Running& r : running_) fail(r, 503, "the server is shutting down");
        sweep();
        publish_gauges();
        return;
      }
      admit_locked();
    }
    if (beam_job_) {
      run_beam_job(beam_job_);
      beam_job_.reset();
      running_count_.store(0);
      publish_gauges();
      continue;
    }
    drop_cancelled();
    sweep();
    publish_gauges();  // admissions show in /metrics before their first token goes out
    try {
      step();
    } catch (const std::exception& e) {
      // The model refused the step (it should not: requests are validated). Fail the whole
      // batch rather than the process.
      for (Running& r : running_) fail(r, 500, std::string("the model failed: ") + e.what());
    }
    sweep();
    publish_gauges();
  }
}

void Scheduler::admit_locked() {
  // Blocks the running jobs' next step takes are spoken for already.
  int64_t free = cache_.free_blocks();
  for (const Running& r : running_)
    if (!r.preempted) free -= step_blocks(r);
  // Preempted jobs first, oldest first: they went back to the front of the queue.
  for (Running& r : running_)
    if (r.preempted && !r.job->cancelled.load() && !readmit_locked(r, free)) return;
  while (!queue_.empty()) {
    std::shared_ptr<Job> job = queue_.front();
    if (job->cancelled.load()) {
      queue_.pop_front();
      for (int64_t i = 0; i < job->spec.opts.n; ++i) metrics_.count_finished("cancelled");
      continue;
    }
    const JobSpec& s = job->spec;
    if (s.beams > 0) {  // runs alone: once the batch is empty (see scheduler.h)
      if (!running_.empty()) break;
      queue_.pop_front();
      beam_job_ = job;
      running_count_.store(1);  // shutdown's grace covers it
      return;
    }
    Running r;
    r.job = job;
    r.budget = budget_for(s);
    const int64_t need = step_blocks(r);                               // the prompt's blocks; its samples share them
    if (int64_t(free_slots_.size()) < s.opts.n || need > free) break;  // the head waits; nothing overtakes it
    queue_.pop_front();
    free -= need;
    for (int64_t i = 0; i < s.opts.n; ++i) {
      Sample smp;
      smp.slot = free_slots_.back();
      free_slots_.pop_back();
      cache_.clear(smp.slot);
      smp.dec = std::make_unique<SampleDecoder>(s.opts, s.controls, eos_, s.prompt, i, r.budget, token_bytes_);
      r.samples.push_back(std::move(smp));
    }
    running_.push_back(std::move(r));
    running_count_.store(int64_t(running_.size()));
  }
}

void Scheduler::drop_cancelled() {
  for (Running& r : running_)
    if (r.job->cancelled.load())
      for (Sample& s : r.samples)
        if (!s.done) finish_sample(r, s, "cancelled", {});
}

// Ends one sample: its final text goes out, its slot and cache blocks come back, and the job
// leaves the batch once its last sample is done.
void Scheduler::finish_sample(Running& r, Sample& s, const std::string& reason, std::string text) {
  s.done = true;
  metrics_.count_finished(reason);
  if (reason != "cancelled" && reason != "error") {
    JobEvent e{JobEvent::Kind::Finish};
    e.index = r.job->spec.index;
    e.sample = int64_t(&s - r.samples.data());
    e.text = std::move(text);
    e.finish_reason = reason;
    r.job->sink->push(std::move(e));
  }
  if (s.slot < 0) return;  // preempted: holds nothing
  cache_.clear(s.slot);
  std::lock_guard<std::mutex> lock(mu_);
  free_slots_.push_back(s.slot);
  s.slot = -1;
}

// Jobs whose samples are all done leave the batch (only here, so no reference dangles mid-step).
void Scheduler::sweep() {
  running_.remove_if([](const Running& r) {
    return std::all_of(r.samples.begin(), r.samples.end(), [](const Sample& x) { return x.done; });
  });
  running_count_.store(int64_t(running_.size()));
}

void Scheduler::fail(Running& r, int status, const std::string& message) {
  JobEvent e{JobEvent::Kind::Error};
  e.index = r.job->spec.index, e.status = status, e.text = message;
  r.job->sink->push(std::move(e));
  for (Sample& s : r.samples)
    if (!s.done) finish_sample(r, s, "error", {});
}

void Scheduler::step() {
  make_room();
  const auto t0 = Clock::now();
  std::vector<SeqTokens> batch;
  std::vector<std::pair<Running*, int64_t>> owner;  // per batch row: job, sample (-1: its prefill)
  std::vector<Running*> ready;                      // jobs finished without a forward step
  for (Running& r : running_) {
    if (r.preempted) continue;
    if (!r.prefilled) {
      const JobSpec& s = r.job->spec;
      if (s.opts.echo) {
        prefill_with_prompt_logprobs(r);  // needs every position's logits: its own forward
        continue;
      }
      if (r.budget == 0 && s.next_logprobs == 0) {
        ready.push_back(&r);
        continue;
      }
      batch.push_back({r.samples[0].slot, uncached(r.samples[0].slot, s.prompt), {}});
      owner.emplace_back(&r, -1);
      continue;
    }
    for (size_t i = 0; i < r.samples.size(); ++i) {
      Sample& smp = r.samples[i];
      if (smp.done) continue;
      if (smp.recompute)  // re-admitted after preemption: the whole sequence again, then on as before
        batch.push_back({smp.slot, uncached(smp.slot, smp.dec->history()), {}});
      else
        batch.push_back({smp.slot, {smp.dec->last_token()}, {}});
      smp.recompute = false;
      owner.emplace_back(&r, int64_t(i));
    }
  }
  for (Running* r : ready) {
    r->prefilled = true;
    for (Sample& s : r->samples) finish_sample(*r, s, "length", {});
  }
  if (batch.empty()) return;

  int64_t rows = 0;
  for (const SeqTokens& b : batch) rows += int64_t(b.tokens.size());
  const std::vector<float> logits = model_.forward(cache_, batch, OptModel::Logits::Last);
  // One row per batch entry, in batch order.
  for (size_t row = 0; row < owner.size(); ++row) {
    auto [r, i] = owner[row];
    const float* l = logits.data() + row * size_t(vocab_);
    if (i < 0)
      after_prefill(*r, l);
    else
      advance(*r, r->samples[size_t(i)], l);
  }
  metrics_.observe_step(int64_t(batch.size()), rows, seconds(Clock::now() - t0));
}

void Scheduler::prefill_with_prompt_logprobs(Running& r) {
  const JobSpec& s = r.job->spec;
  const std::vector<float> logits = model_.forward(cache_, {{r.samples[0].slot, s.prompt, {}}}, OptModel::Logits::All);
  JobEvent e{JobEvent::Kind::Prompt};
  e.index = s.index;
  e.tokens = prompt_logprobs(s.prompt, logits.data(), vocab_, s.opts.top_logprobs);
  r.job->sink->push(std::move(e));
  after_prefill(r, logits.data() + (s.prompt.size() - 1) * size_t(vocab_));
}

// The prompt is in sample 0's slot: the other samples share its blocks and all start from the
// prompt's last logits (generate() does the same, so n samples match `generate --n`).
void Scheduler::after_prefill(Running& r, const float* last) {
  const JobSpec& s = r.job->spec;
  r.prefilled = true;
  metrics_.add_prompt_tokens(int64_t(s.prompt.size()));
  if (s.next_logprobs > 0) {
    JobEvent e{JobEvent::Kind::NextLogprobs};
    e.index = s.index;
    e.next = top_logprobs(log_softmax(last, vocab_), s.next_logprobs);
    r.job->sink->push(std::move(e));
  }
  for (size_t i = 1; i < r.samples.size(); ++i) cache_.fork(r.samples[0].slot, r.samples[i].slot);
  for (Sample& smp : r.samples) {
    if (r.budget == 0)
      finish_sample(r, smp, "length", {});
    else
      advance(r, smp, last);
  }
}

void Scheduler::advance(Running& r, Sample& s, const float* logits) {
  const auto now = Clock::now();
  SampleDecoder::Step st = s.dec->next(logits, vocab_);
  if (st.token) {
    metrics_.add_generated_tokens(1);
    if (!r.first_token_seen) {
      r.first_token_seen = true;
      metrics_.observe_ttft(seconds(now - r.job->submitted));
    }
    if (s.dec->generated() > 1) metrics_.observe_token_latency(seconds(now - s.last_token));
    s.last_token = now;
    JobEvent e{JobEvent::Kind::Token};
    e.index = r.job->spec.index;
    e.sample = int64_t(&s - r.samples.data());
    e.tokens.push_back(std::move(*st.token));
    e.text = std::move(st.text);
    r.job->sink->push(std::move(e));
  }
  if (s.dec->finished()) finish_sample(r, s, s.dec->finish_reason(), s.dec->rest());
}

void Scheduler::publish_gauges() {
  SchedulerGauges g;
  int64_t seqs = 0, running = 0, preempted = 0;
  for (const Running& r : running_) {
    (r.preempted ? preempted : running) += 1;
    for (const Sample& s : r.samples) seqs += !s.done && s.slot >= 0 ? 1 : 0;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    g.queued = int64_t(queue_.size()) + preempted;  // preempted jobs wait at the queue's front
  }
  g.running_requests = running;
  g.running_sequences = seqs;
  g.kv_blocks_used = cache_.used_blocks();
  g.kv_blocks_free = cache_.free_blocks();
  g.kv_tokens_used = g.kv_blocks_used * kKvBlockSize;
  g.kv_tokens_capacity = kv_budget();
  g.max_batch = opt_.max_batch;
  metrics_.set_scheduler(g);
}

}  // namespace optforge::serve
