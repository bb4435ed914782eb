#include "serve/metrics.h"

#include <cmath>
#include <cstdio>

namespace optforge::serve {
namespace {

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, double v) { out += name + " " + num(v) + "\n"; }

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const double le = i < bounds_.size() ? bounds_[i] : INFINITY;
    out += name + "_bucket{le=\"" + num(le) + "\"} " + std::to_string(cum) + "\n";
  }
  sample(out, name + "_sum", sum_);
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      token_latency_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      step_seconds_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> l(mu_);
  ++requests_[{route, status}];
}
void Metrics::add_prompt_tokens(int64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  prompt_tokens_ += uint64_t(n);
}
void Metrics::add_generated_tokens(int64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  generated_tokens_ += uint64_t(n);
}
void Metrics::count_finished(const std::string& reason) {
  std::lock_guard<std::mutex> l(mu_);
  ++finished_[reason];
}
void Metrics::observe_ttft(double s) {
  std::lock_guard<std::mutex> l(mu_);
  ttft_.observe(s);
}
void Metrics::observe_token_latency(double s) {
  std::lock_guard<std::mutex> l(mu_);
  token_latency_.observe(s);
}
void Metrics::observe_step(int64_t sequences, int64_t rows, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  (void)rows;
  ++steps_;
  step_seconds_.observe(seconds);
  batch_size_.observe(double(sequences));
}
void Metrics::count_prefix_cache(int64_t queried_tokens, int64_t hit_tokens) {
  std::lock_guard<std::mutex> l(mu_);
  prefix_queries_ += uint64_t(queried_tokens);
  prefix_hits_ += uint64_t(hit_tokens);
}
void Metrics::count_preemption() {
  std::lock_guard<std::mutex> l(mu_);
  ++preemptions_;
}
void Metrics::set_scheduler(const SchedulerGauges& g) {
  std::lock_guard<std::mutex> l(mu_);
  gauges_ = g;
}

std::string Metrics::render(int64_t open_connections) const {
  std::lock_guard<std::mutex> l(mu_);
  std::string o;
  header(o, "optforge_http_requests_total", "counter", "HTTP requests answered, by route and status code.");
  for (const auto& [key, n] : requests_)
    o += "optforge_http_requests_total{route=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
         std::to_string(n) + "\n";
  header(o, "optforge_http_connections", "gauge", "Open client connections.");
  sample(o, "optforge_http_connections", double(open_connections));
  header(o, "optforge_prompt_tokens_total", "counter", "Prompt tokens processed (prefilled).");
  sample(o, "optforge_prompt_tokens_total", double(prompt_tokens_));
  header(o, "optforge_generation_tokens_total", "counter", "Tokens generated.");
  sample(o, "optforge_generation_tokens_total", double(generated_tokens_));
  header(o, "optforge_sequences_finished_total", "counter",
         "Samples that ended, by reason (stop, length, cancelled, error).");
  for (const char* r : {"stop", "length", "cancelled", "error"}) {
    auto it = finished_.find(r);
    o += std::string("optforge_sequences_finished_total{reason=\"") + r + "\"} " +
         std::to_string(it == finished_.end() ? 0 : it->second) + "\n";
  }
  header(o, "optforge_queue_depth", "gauge", "Requests (prompts) waiting for admission.");
  sample(o, "optforge_queue_depth", double(gauges_.queued));
  header(o, "optforge_running_requests", "gauge", "Requests (prompts) in the running batch.");
  sample(o, "optforge_running_requests", double(gauges_.running_requests));
  header(o, "optforge_batch_size", "gauge", "Sequences (samples) in the running batch.");
  sample(o, "optforge_batch_size", double(gauges_.running_sequences));
  header(o, "optforge_batch_size_max", "gauge", "Batch slots (--max-batch).");
  sample(o, "optforge_batch_size_max", double(gauges_.max_batch));
  header(o, "optforge_kv_cache_used_tokens", "gauge", "KV cache tokens in used blocks (used blocks x block size).");
  sample(o, "optforge_kv_cache_used_tokens", double(gauges_.kv_tokens_used));
  header(o, "optforge_kv_cache_capacity_tokens", "gauge", "KV cache pool size in tokens (--kv-cache-tokens).");
  sample(o, "optforge_kv_cache_capacity_tokens", double(gauges_.kv_tokens_capacity));
  header(o, "optforge_kv_cache_used_blocks", "gauge", "KV cache blocks held by sequences.");
  sample(o, "optforge_kv_cache_used_blocks", double(gauges_.kv_blocks_used));
  header(o, "optforge_kv_cache_free_blocks", "gauge", "KV cache blocks free in the pool.");
  sample(o, "optforge_kv_cache_free_blocks", double(gauges_.kv_blocks_free));
  header(o, "optforge_num_preemptions_total", "counter",
         "Running requests preempted for want of KV cache blocks (recomputed when re-admitted).");
  sample(o, "optforge_num_preemptions_total", double(preemptions_));
  header(o, "optforge_prefix_cache_queries_total", "counter",
         "Prompt tokens looked up in the prefix cache (vLLM's prefix_cache_queries).");
  sample(o, "optforge_prefix_cache_queries_total", double(prefix_queries_));
  header(o, "optforge_prefix_cache_hits_total", "counter",
         "Prompt tokens found in the prefix cache, not computed (vLLM's prefix_cache_hits).");
  sample(o, "optforge_prefix_cache_hits_total", double(prefix_hits_));
  header(o, "optforge_kv_cache_usage_ratio", "gauge", "Fraction of the KV cache pool in use.");
  sample(o, "optforge_kv_cache_usage_ratio",
         gauges_.kv_tokens_capacity ? double(gauges_.kv_tokens_used) / double(gauges_.kv_tokens_capacity) : 0.0);
  header(o, "optforge_decode_steps_total", "counter", "Batched forward steps run.");
  sample(o, "optforge_decode_steps_total", double(steps_));
  header(o, "optforge_time_to_first_token_seconds", "histogram",
         "From a request's arrival to its first generated token.");
  ttft_.render(o, "optforge_time_to_first_token_seconds");
  header(o, "optforge_time_per_output_token_seconds", "histogram", "Between consecutive generated tokens of a sample.");
  token_latency_.render(o, "optforge_time_per_output_token_seconds");
  header(o, "optforge_step_duration_seconds", "histogram", "Duration of one batched forward step (with sampling).");
  step_seconds_.render(o, "optforge_step_duration_seconds");
  header(o, "optforge_step_batch_size", "histogram", "Sequences per batched forward step.");
  batch_size_.render(o, "optforge_step_batch_size");
  return o;
}

}  // namespace optforge::serve
