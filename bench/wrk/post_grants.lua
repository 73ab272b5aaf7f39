-- POST /v1/zones/<zone>/grants for one application and resource, a user id no other request uses.
-- wrk's command line after `--`: the run tag, then the zone, application and resource ids.
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

init = function(args)
  prefix = string.format("%s-%d", args[1] or "bench", thread_no or 0)
  path = string.format("/v1/zones/%s/grants", args[2])
  application_id, resource_id = args[3], args[4]
  sent = 0
end

request = function()
  sent = sent + 1
  local body = string.format(
    '{"application_id":"%s","user_id":"user-%s-%d","resource_id":"%s","scopes":["read"]}',
    application_id, prefix, sent, resource_id)
  return wrk.format("POST", path, nil, body)
end
