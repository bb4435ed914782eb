// The scheduler against generate(): whatever the batch a request shares, greedy and seeded
// samples come out as generate() makes them alone; admission is FIFO under the KV budget;
// cancelled jobs give their slots back; impossible jobs are refused up front.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "formats/torch_file.h"
#include "model/runtime.h"
#include "opt/random_model.h"
#include "serve/api_error.h"
#include "serve/scheduler.h"

using namespace optforge;
using namespace optforge::serve;

namespace {

std::string make_tiny_model(int64_t positions, const char* name) {
  OptConfig c = *published_opt_config("125m");
  c.layers = 2, c.embed_dim = 40, c.ffn_dim = 72, c.heads = 4, c.input_dim = 40, c.vocab = 301;
  c.max_positions = positions;
  const auto p = std::filesystem::temp_directory_path() / name;
  save_torch_file(p.string(), random_opt_checkpoint(c, DType::F16, 5));
  return p.string();
}

std::string tiny_model() {
  static const std::string path = make_tiny_model(64, "optforge_serve_scheduler_test.pt");
  return path;
}

// Room for a job that runs long enough to be cancelled while it runs.
std::string long_context_model() {
  static const std::string path = make_tiny_model(4096, "optforge_serve_scheduler_long_test.pt");
  return path;
}

struct Result {
  std::vector<std::vector<int32_t>> ids;  // per sample
  std::vector<std::string> text, finish;
  int error = 0;
};

// Drains a sink until every sample of `jobs` jobs with n samples each is finished.
std::vector<Result> collect(EventSink& sink, size_t jobs, int64_t n, std::vector<int64_t>* finish_order = nullptr) {
  std::vector<Result> out(jobs);
  for (auto& r : out) r.ids.resize(size_t(n)), r.text.resize(size_t(n)), r.finish.resize(size_t(n));
  size_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done < jobs * size_t(n) && std::chrono::steady_clock::now() < deadline) {
    for (const JobEvent& e : sink.wait(std::chrono::milliseconds(50))) {
      Result& r = out[size_t(e.index)];
      if (e.kind == JobEvent::Kind::Token)
        r.ids[size_t(e.sample)].push_back(e.tokens[0].id), r.text[size_t(e.sample)] += e.text;
      if (e.kind == JobEvent::Kind::Finish) {
        r.text[size_t(e.sample)] += e.text, r.finish[size_t(e.sample)] = e.finish_reason, ++done;
        if (finish_order) finish_order->push_back(e.index);
      }
      if (e.kind == JobEvent::Kind::Error) r.error = e.status, done += size_t(n);
    }
  }
  EXPECT_EQ(done, jobs * size_t(n)) << "timed out";
  return out;
}

std::shared_ptr<Job> make_job(std::vector<int32_t> prompt, int64_t max_tokens, int64_t index,
                              std::shared_ptr<EventSink> sink, float temperature = 0, int64_t n = 1) {
  auto j = std::make_shared<Job>();
  j->spec.prompt = std::move(prompt);
  j->spec.opts.max_tokens = max_tokens;
  j->spec.opts.sampling.temperature = temperature;
  j->spec.opts.sampling.seed = 11;
  j->spec.opts.n = n;
  j->spec.opts.stop_at_eos = false;
  j->spec.index = index;
  j->sink = std::move(sink);
  return j;
}

std::vector<int32_t> prompt_of(int i) {
  std::vector<int32_t> p = {2};
  for (int k = 0; k < 3 + i % 5; ++k) p.push_back(int32_t(5 + (i * 37 + k * 11) % 290));
  return p;
}

}  // namespace

TEST(Scheduler, BatchedRequestsEqualGenerateAlone) {
  auto rt = open_model(tiny_model(), 2);
  const Tokenizer tok = Tokenizer::builtin();
  Metrics metrics;
  Scheduler s(*rt->model, tok, {8, 0, 64}, metrics);
  auto sink = std::make_shared<EventSink>();
  const int jobs = 10;  // more than the batch: some wait, then join mid-flight
  for (int i = 0; i < jobs; ++i)
    s.submit(make_job(prompt_of(i), 6 + i % 7, i, sink, i % 3 == 2 ? 1.0f : 0.0f, i % 3 == 2 ? 2 : 1));
  std::vector<Result> got(jobs);
  {
    // Jobs have different n; collect per job from one sink.
    size_t need = 0;
    for (int i = 0; i < jobs; ++i) {
      const int64_t n = i % 3 == 2 ? 2 : 1;
      need += size_t(n);
      got[size_t(i)].ids.resize(size_t(n)), got[size_t(i)].text.resize(size_t(n)),
          got[size_t(i)].finish.resize(size_t(n));
    }
    size_t done = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (done < need && std::chrono::steady_clock::now() < deadline)
      for (const JobEvent& e : sink->wait(std::chrono::milliseconds(50))) {
        Result& r = got[size_t(e.index)];
        if (e.kind == JobEvent::Kind::Token)
          r.ids[size_t(e.sample)].push_back(e.tokens[0].id), r.text[size_t(e.sample)] += e.text;
        if (e.kind == JobEvent::Kind::Finish)
          r.text[size_t(e.sample)] += e.text, r.finish[size_t(e.sample)] = e.finish_reason, ++done;
      }
    ASSERT_EQ(done, need);
  }
  for (int i = 0; i < jobs; ++i) {
    GenerateOptions g;
    g.max_tokens = 6 + i % 7;
    g.sampling.temperature = i % 3 == 2 ? 1.0f : 0.0f;
    g.sampling.seed = 11;
    g.n = i % 3 == 2 ? 2 : 1;
    g.stop_at_eos = false;
    const auto want = generate(*rt->model, prompt_of(i), g, text_bytes(tok));
    for (size_t k = 0; k < want.size(); ++k) {
      std::vector<int32_t> ids;
      for (const auto& t : want[k].tokens) ids.push_back(t.id);
      EXPECT_EQ(got[size_t(i)].ids[k], ids) << "job " << i << " sample " << k;
      EXPECT_EQ(got[size_t(i)].text[k], want[k].text);
      EXPECT_EQ(got[size_t(i)].finish[k], want[k].finish_reason);
    }
  }
}

TEST(Scheduler, AdmitsInArrivalOrderUnderTheKvBudget) {
  auto rt = open_model(tiny_model(), 2);
  Metrics metrics;
  // Room for one job of 5 + 20 tokens at a time: the rest wait their turn, in order.
  Scheduler s(*rt->model, Tokenizer::builtin(), {4, 30, 64}, metrics);
  auto sink = std::make_shared<EventSink>();
  for (int i = 0; i < 4; ++i) s.submit(make_job({2, 10, 11, 12, 13}, 20, i, sink));
  std::vector<int64_t> order;
  auto got = collect(*sink, 4, 1, &order);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3}));
  for (const auto& r : got) EXPECT_EQ(r.ids[0], got[0].ids[0]);                  // same prompt, same greedy text
  EXPECT_THROW(s.submit(make_job({2, 10, 11, 12, 13}, 40, 0, sink)), ApiError);  // 45 tokens > budget 30
}

TEST(Scheduler, RefusesWhatCanNeverRun) {
  auto rt = open_model(tiny_model(), 2);
  Metrics metrics;
  Scheduler s(*rt->model, Tokenizer::builtin(), {2, 0, 64}, metrics);
  auto sink = std::make_shared<EventSink>();
  try {
    s.submit(make_job(std::vector<int32_t>(65, 5), 1, 0, sink));
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(e.message().find("64"), std::string::npos);
  }
  EXPECT_THROW(s.submit(make_job({}, 1, 0, sink)), ApiError);
  EXPECT_THROW(s.submit(make_job({2, 5}, 1, 0, sink, 1.0f, 3)), ApiError);  // n above the batch
  s.shutdown(std::chrono::milliseconds(0));
  try {
    s.submit(make_job({2, 5}, 1, 0, sink));
    FAIL();
  } catch (const ApiError& e) { EXPECT_EQ(e.status(), 503); }
}

TEST(Scheduler, CancelledJobsFreeTheirSlots) {
  // On a loaded machine even a 4000-token job can finish before the cancel reaches the scheduler (its
  // finish reason is then "length"): that run proves nothing, so it is tried again.
  auto rt = open_model(long_context_model(), 2);
  for (int attempt = 0; attempt < 5; ++attempt) {
    Metrics metrics;
    Scheduler s(*rt->model, Tokenizer::builtin(), {1, 0, 64}, metrics);
    auto sink = std::make_shared<EventSink>();
    auto long_job = make_job({2, 7, 8}, 4000, 0, sink);
    bool finished = false;
    std::string long_reason;
    auto see = [&](const std::vector<JobEvent>& events) {
      for (const JobEvent& e : events) {
        if (e.kind == JobEvent::Kind::Finish && e.index == 1) finished = true;
        if (e.kind == JobEvent::Kind::Finish && e.index == 0) long_reason = e.finish_reason;
      }
    };
    s.submit(long_job);
    see(sink->wait(std::chrono::seconds(10)));  // it is running (or, on a slow turn, already done)
    auto next = make_job({2, 9}, 3, 1, sink);
    s.submit(next);  // waits: the only slot is taken
    s.cancel(long_job);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!finished && std::chrono::steady_clock::now() < deadline) see(sink->wait(std::chrono::milliseconds(50)));
    EXPECT_TRUE(finished);
    if (long_reason == "length") continue;  // the race was lost: the job ended on its own
    EXPECT_NE(metrics.render(0).find("optforge_sequences_finished_total{reason=\"cancelled\"} 1"), std::string::npos)
        << "long job: " << long_reason << "\n"
        << metrics.render(0);
    return;
  }
  GTEST_FAIL() << "the long job always finished before its cancel arrived";
}

namespace {

std::shared_ptr<Job> make_beam_job(int64_t beams, int64_t max_tokens, int64_t index, std::shared_ptr<EventSink> sink) {
  auto j = make_job({2, 7, 8}, max_tokens, index, std::move(sink));
  j->spec.beams = beams;
  return j;
}

}  // namespace

TEST(Scheduler, RefusesBeamsAboveTheBatchOrThePool) {
  auto rt = open_model(tiny_model(), 2);
  Metrics metrics;
  Scheduler s(*rt->model, Tokenizer::builtin(), {2, 64, 64}, metrics);  // 4 blocks
  auto sink = std::make_shared<EventSink>();
  EXPECT_THROW(s.submit(make_beam_job(3, 4, 0, sink)), ApiError);   // beams above --max-batch
  EXPECT_THROW(s.submit(make_beam_job(2, 40, 0, sink)), ApiError);  // 2 x 3 blocks > 4
  s.submit(make_beam_job(2, 4, 0, sink));
  const std::vector<Result> r = collect(*sink, 1, 1);
  EXPECT_EQ(r[0].error, 0);
  EXPECT_EQ(r[0].finish[0], "length");
}

// A beam job runs to its end on the scheduler thread: a cancel or a shutdown must still stop it
// between steps, give its sequences back, and let the queue go on.
TEST(Scheduler, CancelledOrShutDownBeamJobsStop) {
  auto rt = open_model(long_context_model(), 2);
  for (int attempt = 0; attempt < 5; ++attempt) {
    Metrics metrics;
    Scheduler s(*rt->model, Tokenizer::builtin(), {2, 0, 64}, metrics);
    auto sink = std::make_shared<EventSink>();
    auto beam = make_beam_job(2, 4000, 0, sink);
    s.submit(beam);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s.submit(make_job({2, 9}, 3, 1, sink));  // waits behind the beam job
    s.cancel(beam);
    std::vector<JobEvent> seen;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    auto next_done = [&] {
      return std::any_of(seen.begin(), seen.end(),
                         [](const JobEvent& e) { return e.kind == JobEvent::Kind::Finish && e.index == 1; });
    };
    while (!next_done() && std::chrono::steady_clock::now() < deadline)
      for (JobEvent& e : sink->wait(std::chrono::milliseconds(50))) seen.push_back(std::move(e));
    ASSERT_TRUE(next_done());
    if (std::any_of(seen.begin(), seen.end(), [](const JobEvent& e) { return e.index == 0; }))
      continue;  // the beam job finished before the cancel arrived: try again
    EXPECT_NE(metrics.render(0).find("optforge_sequences_finished_total{reason=\"cancelled\"} 1"), std::string::npos);

    auto again = make_beam_job(2, 4000, 2, sink);
    s.submit(again);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s.shutdown(std::chrono::milliseconds(0));
    std::vector<JobEvent> last = sink->wait(std::chrono::milliseconds(100));
    ASSERT_FALSE(last.empty());
    EXPECT_EQ(last.back().kind, JobEvent::Kind::Error);
    EXPECT_EQ(last.back().status, 503);
    return;
  }
  GTEST_FAIL() << "the beam job always finished before its cancel arrived";
}
