-- wrk script for `make bench`: POSTs one JSON body with an API key and an Idempotency-Key.
-- Arguments (after `--`): body_file mode tokens prefix [replay_keys]
--   mode "fresh": every request gets its own key (prefix-thread-n);
--   mode "replay": keys cycle over prefix-0 .. prefix-(replay_keys-1), already completed;
--   mode "get": GETs instead, body_file holding the paths (one a line) used in turn.
--   tokens: comma-separated API keys, used round-robin.
-- Prints one line "BENCH_JSON {...}" with counts, latency percentiles, statuses and the sum of
-- the X-Bench-Queries header (SQL statements per request, from bench/middleware.py).

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

function init(args)
  local handle = io.open(args[1], "rb")
  body = handle:read("*a")
  handle:close()
  mode = args[2]
  paths = {}
  for path in string.gmatch(body, "[^\n]+") do
    table.insert(paths, path)
  end
  tokens = {}
  for token in string.gmatch(args[3], "[^,]+") do
    table.insert(tokens, token)
  end
  prefix = args[4]
  replay_keys = tonumber(args[5] or "1")
  n = 0
  statuses = {}
  queries = 0
  counted = 0
end

function request()
  n = n + 1
  if mode == "get" then
    local headers = {["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}
    return wrk.format("GET", paths[(n % #paths) + 1], headers)
  end
  local key
  if mode == "replay" then
    key = prefix .. "-" .. (n % replay_keys)
  else
    key = prefix .. "-" .. id .. "-" .. n
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
    ["Idempotency-Key"] = key,
  }
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  local q = headers["X-Bench-Queries"] or headers["x-bench-queries"]
  if q then
    queries = queries + tonumber(q)
    counted = counted + 1
  end
end

function done(summary, latency, requests)
  local all_statuses = {}
  local total_queries, total_counted = 0, 0
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do
      all_statuses[k] = (all_statuses[k] or 0) + v
    end
    total_queries = total_queries + thread:get("queries")
    total_counted = total_counted + thread:get("counted")
  end
  local parts = {}
  for k, v in pairs(all_statuses) do
    table.insert(parts, string.format('"%s":%d', k, v))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"socket_errors":%d,"timeouts":%d,"non_2xx":%d,"statuses":{%s},' ..
    '"queries":%d,"counted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write, e.timeout, e.status,
    table.concat(parts, ","), total_queries, total_counted))
end
