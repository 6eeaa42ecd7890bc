-- wrk script for the intake saturation run: POST /api/v1/referrals with realistic bodies, in turn.
-- BENCH_BODIES names a file with one JSON body a line; done() prints one JSON line for the harness.
local bodies = {}
local n = 0
local path = os.getenv("BENCH_BODIES")
for line in io.lines(path) do
  if #line > 0 then
    n = n + 1
    bodies[n] = line
  end
end
local i = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
  i = (i % n) + 1
  return wrk.format("POST", "/api/v1/referrals", headers, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
