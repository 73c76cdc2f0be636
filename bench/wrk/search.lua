-- search.lua — POST /v1/search {"ns","query","limit"} with queries drawn at
-- random from the file given as the first script argument.
--   wrk -s bench/wrk/search.lua URL -- QUERIES_FILE NS LIMIT
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
  local ns, limit = args[2], args[3]
  for _, q in ipairs(common.lines(args[1])) do
    bodies[#bodies + 1] = '{"ns":' .. common.json_string(ns) .. ',"query":' ..
      common.json_string(q) .. ',"limit":' .. limit .. '}'
  end
  math.randomseed(4343 + (tid or 0))
end

function request()
  return wrk.format("POST", "/v1/search", headers, bodies[math.random(#bodies)])
end
