-- common.lua — shared by the wrk scripts of bench_http (bench/http.c):
-- reads one item a line from the file named by the script's first argument,
-- seeds each wrk thread differently, and escapes text for a JSON string.
local M = {}

function M.lines(path)
  local t = {}
  for line in io.lines(path) do
    if #line > 0 then t[#t + 1] = line end
  end
  assert(#t > 0, "no lines in " .. path)
  return t
end

function M.json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    return string.format('\\u%04x', c:byte())
  end) .. '"'
end

return M
