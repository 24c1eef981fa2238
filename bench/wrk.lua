-- wrk script for bench/run: POST a small OpenAI chat completion (or GET /models).
-- Derived from ../shared/bench/post.lua; adds a count of the requests wrk *sent*
-- (not only the ones it saw answered), so the log-row check can be exact: a
-- request still in flight when wrk stops is logged by the gateway (as a 499).
--
-- Environment (all optional):
--   BENCH_MODEL    model name sent in the body            (default gpt-4o)
--   BENCH_API_KEY  sent as "Authorization: Bearer <key>"  (default sk-bench)
--   BENCH_STREAM   1 = ask for SSE ("stream": true + include_usage)
--   BENCH_METHOD   GET = send a bodiless GET instead (for /models)
--
-- At the end it prints one line starting with BENCH_RESULT (latencies in ms).

local model  = os.getenv("BENCH_MODEL") or "gpt-4o"
local key    = os.getenv("BENCH_API_KEY") or "sk-bench"
local stream = os.getenv("BENCH_STREAM") == "1"
local method = os.getenv("BENCH_METHOD") or "POST"

wrk.method = method
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["User-Agent"] = "bench-wrk/1"

if method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  local extra = ""
  if stream then
    extra = ',"stream":true,"stream_options":{"include_usage":true}'
  end
  wrk.body = string.format(
    '{"model":"%s","messages":[' ..
    '{"role":"system","content":"You are a helpful assistant."},' ..
    '{"role":"user","content":"Say hello in one short sentence."}],' ..
    '"max_tokens":64,"temperature":0%s}', model, extra)
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  issued = 0
  req = wrk.format()
end

function request()
  issued = issued + 1
  return req
end

function done(summary, latency, requests)
  -- wrk calls request() once more than it sends: at start-up, on thread 1, to
  -- check how many requests one call returns (script_verify_request).
  local sent = -1
  for _, t in ipairs(threads) do
    sent = sent + (t:get("issued") or 0)
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d issued=%d duration_s=%.3f rps=%.1f " ..
    "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d bytes=%d\n",
    summary.requests, sent, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.status, e.connect, e.read, e.write, e.timeout, summary.bytes))
end
