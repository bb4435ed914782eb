// The scheduler's beam search jobs: run alone, to their end, on the scheduler thread (see
// scheduler.h), through the same model/beam_search.h as `optforge generate --beams`.
#include "model/beam_search.h"
#include "serve/scheduler.h"

namespace optforge::serve {

void Scheduler::run_beam_job(const std::shared_ptr<Job>& job) {
  const JobSpec& s = job->spec;
  BeamOptions o;
  o.beams = s.beams;
  o.n = s.opts.n;
  o.max_tokens = s.opts.max_tokens;
  o.length_penalty = s.length_penalty;
  o.early_stopping = s.early_stopping;
  o.stop = s.opts.stop;
  o.stop_at_eos = s.opts.stop_at_eos;
  o.echo = s.opts.echo;
  o.top_logprobs = s.opts.top_logprobs;
  auto push = [&](JobEvent e) {
    e.index = s.index;
    job->sink->push(std::move(e));
  };
  std::vector<int64_t> slots;
  {
    std::lock_guard<std::mutex> lock(mu_);  // nothing runs beside it: every slot is free (submit: beams <= max_batch)
    for (size_t i = 0; i < size_t(s.beams) && i < free_slots_.size(); ++i)
      slots.push_back(free_slots_[free_slots_.size() - 1 - i]);
  }
  if (int64_t(slots.size()) < s.beams) {  // cannot happen while beam jobs run alone; never a wrong slot
    push({JobEvent::Kind::Error, 0, 0, {}, {}, "the scheduler has no free slots for the beams", {}, 500});
    return;
  }
  bool aborted = false;
  auto stop_now = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    aborted = abort_;
    return aborted || job->cancelled.load();
  };
  std::vector<BeamResult> beams;
  try {
    for (int64_t slot : slots) cache_.clear(slot);
    beams = beam_search(model_, cache_, slots, s.prompt, o, token_bytes_, stop_now);
  } catch (const std::exception& e) {
    push({JobEvent::Kind::Error, 0, 0, {}, {}, std::string("the model failed: ") + e.what(), {}, 500});
    metrics_.count_finished("error");
    return;
  }
  if (beams.empty()) {  // cancelled, or the server is shutting down
    if (aborted) push({JobEvent::Kind::Error, 0, 0, {}, {}, "the server is shutting down", {}, 503});
    metrics_.count_finished("cancelled");
    return;
  }
  metrics_.add_prompt_tokens(int64_t(s.prompt.size()));
  if (s.opts.echo) push({JobEvent::Kind::Prompt, 0, 0, beams[0].completion.prompt, {}, {}, {}, 0});
  for (size_t i = 0; i < beams.size(); ++i) {
    Completion& c = beams[i].completion;
    metrics_.add_generated_tokens(int64_t(c.tokens.size()));
    if (!s.controls.logprobs)
      for (GeneratedToken& t : c.tokens) t.logprob.reset(), t.top.clear();
    if (!c.tokens.empty()) push({JobEvent::Kind::Token, 0, int64_t(i), std::move(c.tokens), {}, {}, {}, 0});
    push({JobEvent::Kind::Finish, 0, int64_t(i), {}, {}, std::move(c.text), c.finish_reason, 0});
    metrics_.count_finished(c.finish_reason);
  }
}

}  // namespace optforge::serve
