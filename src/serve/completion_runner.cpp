#include "serve/completion_runner.h"

#include <chrono>
#include <ctime>

namespace optforge::serve {
namespace {

using json = nlohmann::ordered_json;
constexpr auto kPoll = std::chrono::milliseconds(25);

// Holds a request's jobs and cancels whatever is still running when it goes out of scope.
class Jobs {
 public:
  Jobs(Scheduler& s) : s_(s), sink_(std::make_shared<EventSink>()) {}
  ~Jobs() {
    for (auto& j : jobs_) s_.cancel(j);
  }
  void submit(JobSpec spec) {
    auto job = std::make_shared<Job>();
    job->spec = std::move(spec);
    job->sink = sink_;
    s_.submit(job);  // throws ApiError: the jobs submitted so far are cancelled by ~Jobs
    jobs_.push_back(std::move(job));
  }
  EventSink& sink() { return *sink_; }

 private:
  Scheduler& s_;
  std::shared_ptr<EventSink> sink_;
  std::vector<std::shared_ptr<Job>> jobs_;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

int run_completion(Scheduler& scheduler, const CompletionRequest& req, const ApiContext& ctx, ApiFlavor flavor,
                   HttpExchange& ex) {
  const std::string id = flavor == ApiFlavor::Alpa ? uuid4() : new_completion_id();
  CompletionWriter w(req, ctx, id, int64_t(std::time(nullptr)));
  return run_jobs(scheduler, req, w, ex);
}

int run_jobs(Scheduler& scheduler, const CompletionRequest& req, ResponseWriter& w, HttpExchange& ex) {
  Jobs jobs(scheduler);
  for (size_t i = 0; i < req.prompts.size(); ++i) {
    JobSpec spec = req.spec;
    spec.prompt = req.prompts[i];
    spec.index = int64_t(i);
    jobs.submit(std::move(spec));
  }

  if (req.stream) {
    if (!ex.start_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}}))
      return 200;
    for (const json& c : w.start_chunks())
      if (!ex.write(sse(c))) return 200;
    while (!w.finished()) {
      for (const JobEvent& e : jobs.sink().wait(kPoll)) {
        if (e.kind == JobEvent::Kind::Error) {
          // Mid-stream failures (e.g. shutdown) cannot change the status any more: an error
          // event, then the end of the stream.
          ex.write(sse(json(ApiError(e.status, e.text).to_json())));
          ex.write("data: [DONE]\n\n");
          ex.end_stream();
          return 200;
        }
        for (const json& c : w.chunks(e))
          if (!ex.write(sse(c))) return 200;
      }
      if (ex.client_gone()) return 200;
    }
    if (req.include_usage) ex.write(sse(w.usage_chunk()));
    ex.write("data: [DONE]\n\n");
    ex.end_stream();
    return 200;
  }

  while (!w.finished()) {
    for (const JobEvent& e : jobs.sink().wait(kPoll)) {
      if (e.kind == JobEvent::Kind::Error) throw ApiError(e.status, e.text);
      w.collect(e);
    }
    if (ex.client_gone()) {  // nobody to answer; the jobs are cancelled on return
      ex.abandon();
      return 499;
    }
  }
  json out = w.response();
  ex.send({200, "application/json", {}, dump(out)});
  return 200;
}

std::vector<std::vector<TokenLogprob>> run_next_logprobs(Scheduler& scheduler, const AlpaLogprobsRequest& req,
                                                         HttpExchange& ex) {
  Jobs jobs(scheduler);
  for (size_t i = 0; i < req.prompts.size(); ++i) {
    JobSpec spec;
    spec.prompt = req.prompts[i];
    spec.index = int64_t(i);
    spec.opts.max_tokens = 0;
    spec.opts.sampling.temperature = 0;
    spec.next_logprobs = req.top_k;
    jobs.submit(std::move(spec));
  }
  std::vector<std::vector<TokenLogprob>> out(req.prompts.size());
  size_t got = 0;
  while (got < req.prompts.size()) {
    for (const JobEvent& e : jobs.sink().wait(kPoll)) {
      if (e.kind == JobEvent::Kind::Error) throw ApiError(e.status, e.text);
      if (e.kind == JobEvent::Kind::NextLogprobs) {
        out[size_t(e.index)] = e.next;
        ++got;
      }
    }
    if (got < req.prompts.size() && ex.client_gone()) {
      ex.abandon();
      return {};
    }
  }
  return out;
}

}  // namespace optforge::serve
