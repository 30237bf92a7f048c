-- wrk script of scripts/bench: the request comes from the environment (BENCH_METHOD, BENCH_PATH
-- is the URL's, BENCH_BODY as JSON, BENCH_TOKEN as "Authorization: Token ..."); at the end it
-- prints one line "BENCH {json}" with the counts and latency percentiles (microseconds).
local token = os.getenv("BENCH_TOKEN")
local body = os.getenv("BENCH_BODY")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
if token and token ~= "" then
   wrk.headers["Authorization"] = "Token " .. token
end
if body and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
      '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
      '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
