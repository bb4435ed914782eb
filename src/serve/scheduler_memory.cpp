// The scheduler's KV cache accounting (vLLM's recompute preemption): how many blocks a job's
// next step takes, re-admitting preempted jobs, and preempting the newest job when a step would
// need more blocks than are free.
#include "serve/scheduler.h"

namespace optforge::serve {

// A job not yet prefilled takes its prompt's blocks (its samples share them later); a sample
// whose cache is to be recomputed takes its whole history's (both at most: prefix cache hits take
// fewer); a decoding sample takes a block when its last one is full, or shared (copy-on-write).
// The decode figure is exact: only a job's own samples share a partly filled block (the prefix
// cache shares full blocks only, which nobody writes).
int64_t Scheduler::step_blocks(const Running& r) const {
  const JobSpec& spec = r.job->spec;
  if (!r.prefilled) {
    const bool forward = spec.opts.echo || r.budget > 0 || spec.next_logprobs > 0;
    return forward ? kv_blocks_for(int64_t(spec.prompt.size())) : 0;
  }
  int64_t n = 0;
  std::vector<std::pair<int64_t, int64_t>> decodes;  // counted together: its samples share blocks
  for (const Sample& s : r.samples) {
    if (s.done) continue;
    if (s.slot < 0 || s.recompute)
      n += kv_blocks_for(int64_t(s.dec->history().size()));
    else
      decodes.emplace_back(s.slot, 1);
  }
  return n + cache_.blocks_needed(decodes);
}

// Gives a preempted job slots again when its live samples' slots and blocks are free, taking the
// blocks from `free_blocks`. False (it keeps waiting, and so does everything behind it) otherwise.
bool Scheduler::readmit_locked(Running& r, int64_t& free_blocks) {
  int64_t live = 0;
  for (const Sample& s : r.samples) live += s.done ? 0 : 1;
  const int64_t need = step_blocks(r);
  if (live > int64_t(free_slots_.size()) || need > free_blocks) return false;
  free_blocks -= need;
  for (Sample& s : r.samples) {
    if (s.done) continue;
    s.slot = free_slots_.back();
    free_slots_.pop_back();
    s.recompute = r.prefilled;  // before the prefill there is nothing to recompute
  }
  r.preempted = false;
  return true;
}

// Attaches the longest cached prefix of `tokens` to the empty sequence `slot` and returns the
// tokens still to compute; counts the prefix cache's queries and hits (in tokens, as vLLM).
std::vector<int32_t> Scheduler::uncached(int64_t slot, const std::vector<int32_t>& tokens) {
  const int64_t hit = cache_.attach_prefix(slot, tokens);
  if (opt_.prefix_caching) metrics_.count_prefix_cache(int64_t(tokens.size()), hit);
  return {tokens.begin() + hit, tokens.end()};
}

// Preempts running jobs, newest first, until the next step's blocks are free. The oldest job can
// always finish alone (submit refuses what could not), so the batch keeps moving.
void Scheduler::make_room() {
  for (;;) {
    int64_t need = 0;
    Running* newest = nullptr;
    for (Running& r : running_) {
      if (r.preempted) continue;
      need += step_blocks(r);
      newest = &r;
    }
    if (newest == nullptr || need <= cache_.free_blocks()) return;
    preempt(*newest);
  }
}

// Frees the job's slots and blocks; its samples keep their decoders (tokens so far, RNG state),
// so after re-admission they recompute their cache and go on exactly where they stopped.
void Scheduler::preempt(Running& r) {
  for (Sample& s : r.samples) {
    if (s.slot < 0) continue;
    cache_.clear(s.slot);
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_slots_.push_back(s.slot);
    }
    s.slot = -1;
    s.recompute = false;
  }
  r.preempted = true;
  metrics_.count_preemption();
  cv_.notify_all();
}

}  // namespace optforge::serve
