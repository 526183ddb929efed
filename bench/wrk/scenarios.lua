-- Request shapes for the Consentry benchmark, one script for all five scenarios.
--
-- Usage (the runner builds this command):
--   wrk -t1 -c4 -d10s -s bench/wrk/scenarios.lua -H 'Cookie: ...' http://127.0.0.1:PORT \
--       -- SCENARIO DATAFILE [PAGES] [RUNTAG]
--
-- SCENARIO  read | list | search | create | update
-- DATAFILE  one value per line: contact ids (read, update), e-mail addresses (search),
--           organization ids (create); values are picked at random for every request
-- PAGES     highest list page to ask for (list only)
-- RUNTAG    makes the e-mails of created contacts unique across runs (create only)
--
-- done() prints one line "BENCH_JSON {...}" for the runner: requests/s, latency
-- percentiles in ms, socket errors and the number of non-2xx responses (counted in
-- response() in every thread, since wrk itself only counts statuses >= 400).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

local scenario, pages, runtag = "read", 1, "0"
local items = {}
local counter = 0
non2xx = 0
first_bad_status = 0

local function load_lines(path)
   local out = {}
   local handle = assert(io.open(path, "r"))
   for line in handle:lines() do
      if #line > 0 then
         out[#out + 1] = line
      end
   end
   handle:close()
   return out
end

function init(args)
   scenario = args[1] or "read"
   if args[2] and args[2] ~= "-" then
      items = load_lines(args[2])
   end
   pages = tonumber(args[3] or "1") or 1
   runtag = args[4] or "0"
   math.randomseed(os.time() * 1000 + (tid or 0))
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json"
end

local function pick()
   return items[math.random(1, #items)]
end

local jobs = { "Account manager", "Buyer", "Engineer", "Analyst", "Director", "Consultant" }
local cities = { "Leeds", "Bristol", "Glasgow", "Cardiff", "Belfast", "York", "Bath" }

function request()
   if scenario == "read" then
      return wrk.format("GET", "/api/v1/contacts/" .. pick(), nil, nil)
   elseif scenario == "list" then
      local page = math.random(1, pages)
      return wrk.format("GET", "/api/v1/contacts?page=" .. page .. "&page_size=25", nil, nil)
   elseif scenario == "search" then
      return wrk.format("POST", "/api/v1/contacts/search", nil, '{"email":"' .. pick() .. '"}')
   elseif scenario == "create" then
      counter = counter + 1
      local body = string.format(
         '{"first_name":"Bench","last_name":"Contact %d","email":"bench.%s.%d.%d@example.org",'
            .. '"phone":"+442079460%03d","job_title":"%s","city":"%s","country":"GB",'
            .. '"lifecycle_stage":"lead","source":"web","notes":"Created by the benchmark",'
            .. '"organization_id":"%s"}',
         counter, runtag, tid or 0, counter, counter % 1000,
         jobs[math.random(1, #jobs)], cities[math.random(1, #cities)], pick()
      )
      return wrk.format("POST", "/api/v1/contacts", nil, body)
   elseif scenario == "update" then
      local body = string.format(
         '{"job_title":"%s","city":"%s"}', jobs[math.random(1, #jobs)], cities[math.random(1, #cities)]
      )
      return wrk.format("PATCH", "/api/v1/contacts/" .. pick(), nil, body)
   end
   error("unknown scenario " .. tostring(scenario))
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad_status == 0 then
         first_bad_status = status
      end
   end
end

function done(summary, latency, requests)
   local bad, first = 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non2xx") or 0)
      local status = thread:get("first_bad_status") or 0
      if first == 0 then
         first = status
      end
   end
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"seconds":%.3f,"rps":%.2f,"p50_ms":%.3f,"p90_ms":%.3f,'
         .. '"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,"socket_errors":{"connect":%d,'
         .. '"read":%d,"write":%d,"timeout":%d},"status_ge_400":%d,"non2xx":%d,'
         .. '"first_bad_status":%d}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
      e.connect, e.read, e.write, e.timeout, e.status, bad, first
   ))
end
