-- POST /v1/zones with a name and slug no other request of any run uses: `<run tag>-<thread>-<n>`.
-- The run tag comes after `--` on wrk's command line; headers (auth, content type) from -H.
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

init = function(args)
  prefix = string.format("%s-%d", args[1] or "bench", thread_no or 0)
  sent = 0
end

request = function()
  sent = sent + 1
  local name = string.format("%s-%d", prefix, sent)
  local body = string.format('{"name":"%s","slug":"%s"}', name, name)
  return wrk.format("POST", "/v1/zones", nil, body)
end
