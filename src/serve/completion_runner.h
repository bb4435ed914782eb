// Runs parsed requests through the scheduler on behalf of one HTTP exchange: submits one job per
// prompt, relays the events (as SSE chunks, or into one response), and cancels the jobs as soon
// as the client goes away (checked every few tens of milliseconds, and on every failed write)
// or the handler leaves early, so an abandoned request never keeps its batch slot.
#pragma once

#include <memory>
#include <vector>

#include "serve/alpa_api.h"
#include "serve/http_server.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"

namespace optforge::serve {

enum class ApiFlavor { OpenAI, Alpa };

// Answers the exchange; returns the HTTP status sent. Throws ApiError before anything was sent.
int run_completion(Scheduler& scheduler, const CompletionRequest& req, const ApiContext& ctx, ApiFlavor flavor,
                   HttpExchange& ex);

// The same for any response shape (chat's): submits req's jobs, then streams w's chunks when
// req.stream, else sends w.response(). Returns the HTTP status sent; throws ApiError before
// anything was sent.
int run_jobs(Scheduler& scheduler, const CompletionRequest& req, ResponseWriter& w, HttpExchange& ex);

// alpa /logprobs: the top-k next-token logprobs after each prompt, in prompt order.
std::vector<std::vector<TokenLogprob>> run_next_logprobs(Scheduler& scheduler, const AlpaLogprobsRequest& req,
                                                         HttpExchange& ex);

}  // namespace optforge::serve
