-- wrk script of scripts/bench: exactly BENCH_N job submissions (POST BENCH_SUBMIT_PATH, default
-- /api/jobs/; body BENCH_BODY,
-- token BENCH_TOKEN) shared among BENCH_THREADS threads. A thread creates BENCH_OUT.<n>.done once
-- all its answers are in (BENCH_OUT.<n>.progress counts them meanwhile) and then sends nothing
-- more; scripts/bench waits for every such file, stops wrk (SIGINT), and done() writes
-- BENCH_OUT: "ok <n>", "fail <n>", then one job id a line.
local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   local n = tonumber(os.getenv("BENCH_N"))
   local nthreads = tonumber(os.getenv("BENCH_THREADS"))
   quota = math.floor(n / nthreads)
   if tid < n % nthreads then
      quota = quota + 1
   end
   sent, ok, failed, ids = 0, 0, 0, {}
   post = wrk.format("POST", os.getenv("BENCH_SUBMIT_PATH") or "/api/jobs/", {
      ["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN"),
      ["Content-Type"] = "application/json",
   }, os.getenv("BENCH_BODY"))
   marker = os.getenv("BENCH_OUT") .. "." .. tid .. ".done"
   progress = os.getenv("BENCH_OUT") .. "." .. tid .. ".progress"
end

-- wrk asks delay() once before every request it sends (and calls request() once more on its
-- own, to check the script), so the sends are counted here. Past the quota a connection waits.
function delay()
   if sent >= quota then
      return 3600000
   end
   sent = sent + 1
   return 0
end

function request()
   return post
end

function response(status, headers, body)
   local id = body:match('"id"%s*:%s*"([0-9a-f%-]+)"')
   if status == 202 and id then
      ok = ok + 1
      ids[#ids + 1] = id
   else
      failed = failed + 1
   end
   local answered = ok + failed
   if answered == quota then
      io.open(marker, "w"):close()
   elseif answered % 25 == 0 then
      local f = io.open(progress, "w")
      f:write(answered)
      f:close()
   end
end

function done(summary, latency, requests)
   local ok_total, failed_total, all = 0, 0, {}
   for _, thread in ipairs(threads) do
      ok_total = ok_total + thread:get("ok")
      failed_total = failed_total + thread:get("failed")
      for _, id in ipairs(thread:get("ids")) do
         all[#all + 1] = id
      end
   end
   local f = io.open(os.getenv("BENCH_OUT"), "w")
   f:write("ok " .. ok_total .. "\n", "fail " .. failed_total .. "\n", table.concat(all, "\n"), "\n")
   f:close()
end
