-- get.lua — GET /v1/memories/:id?ns=NS for ids drawn at random from the
-- file given as the first script argument (one id a line); NS is the
-- second argument.
--   wrk -s bench/wrk/get.lua URL -- IDS_FILE NS
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local threads = 0
local ids, ns

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  ids = common.lines(args[1])
  ns = args[2]
  math.randomseed(4242 + (tid or 0))
end

function request()
  return wrk.format("GET", "/v1/memories/" .. ids[math.random(#ids)] .. "?ns=" .. ns)
end
