-- context.lua — POST /v1/context {"ns","message","max_memories","timeout_ms",
-- "strategy":"lexical"} (lexical, as bench/http.c's direct calls)
-- with messages drawn at random from the file given as the first script
-- argument.
--   wrk -s bench/wrk/context.lua URL -- QUERIES_FILE NS MAX TIMEOUT_MS
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local threads = 0
local bodies = {}
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  local ns, max, timeout = args[2], args[3], args[4]
  for _, q in ipairs(common.lines(args[1])) do
    bodies[#bodies + 1] = '{"ns":' .. common.json_string(ns) .. ',"message":' ..
      common.json_string(q) .. ',"max_memories":' .. max .. ',"timeout_ms":' ..
      timeout .. ',"strategy":"lexical"}'
  end
  math.randomseed(4444 + (tid or 0))
end

function request()
  return wrk.format("POST", "/v1/context", headers, bodies[math.random(#bodies)])
end
