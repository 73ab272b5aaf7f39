-- Appended to every wrk script of bench/api.py: one machine-readable line with the run's figures.
-- Fields: requests, duration (us), socket errors, non-2xx/3xx responses, p50 and p99 latency (us).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %d %d %d %d %d %d\n",
    summary.requests,
    summary.duration,
    e.connect + e.read + e.write + e.timeout,
    e.status,
    latency:percentile(50.0),
    latency:percentile(99.0)
  ))
end
