// The server's counters, gauges and histograms, rendered in Prometheus' text exposition format
// (version 0.0.4) for GET /metrics. Names follow Prometheus' conventions (optforge_ prefix, base
// units, counters ending in _total) so `promtool check metrics` accepts them. Thread-safe: the
// scheduler thread and every HTTP thread update it; one mutex is enough at these rates.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace optforge::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket, _sum and _count lines.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct SchedulerGauges {
  int64_t queued = 0, running_requests = 0, running_sequences = 0, kv_tokens_used = 0, kv_tokens_capacity = 0,
          max_batch = 0;
  int64_t kv_blocks_used = 0, kv_blocks_free = 0;  // the paged cache's pool
};

class Metrics {
 public:
  Metrics();

  void count_request(const std::string& route, int status);
  void add_prompt_tokens(int64_t n);
  void add_generated_tokens(int64_t n);
  void count_finished(const std::string& reason);  // "stop", "length", "cancelled", "error"
  void observe_ttft(double seconds);
  void observe_token_latency(double seconds);
  void observe_step(int64_t sequences, int64_t rows, double seconds);
  void count_preemption();  // a running job gave its cache blocks back to be recomputed later
  void count_prefix_cache(int64_t queried_tokens, int64_t hit_tokens);
  void set_scheduler(const SchedulerGauges& g);

  std::string render(int64_t open_connections) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> finished_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0, steps_ = 0, preemptions_ = 0, prefix_queries_ = 0,
           prefix_hits_ = 0;
  SchedulerGauges gauges_;
  Histogram ttft_, token_latency_, step_seconds_, batch_size_;
};

}  // namespace optforge::serve
