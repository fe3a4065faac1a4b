-- wrk script of polyhost's access-control benchmark: send complete HTTP requests prepared
-- beforehand (each one signed, or not, by the benchmark), in turn, and print the results as one
-- JSON line with exact percentiles (microseconds), as post.lua does (common.lua).
--
-- Arguments (after `--`):  REQUESTS_FILE
-- The file holds the requests one after another, each as "<length in bytes>\n<raw request>".
-- Both sides of a comparison go through this same script (the same per-request Lua call), so
-- the client's work per request is the same with and without signatures, and no signing is
-- done while measuring.

local requests = {}
local next_request = 1

-- read_file() and done(), shared with the other scripts
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  local data = read_file(args[1])
  local pos = 1
  while pos <= #data do
    local newline = assert(string.find(data, "\n", pos, true), "truncated requests file")
    local length = assert(tonumber(string.sub(data, pos, newline - 1)), "bad length")
    table.insert(requests, string.sub(data, newline + 1, newline + length))
    pos = newline + length + 1
  end
  assert(#requests > 0, "no request in " .. args[1])
end

function request()
  local raw = requests[next_request]
  next_request = next_request % #requests + 1
  return raw
end
