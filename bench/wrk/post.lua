-- wrk script of polyhost's benchmarks: POST a body read from a file, with extra headers, and
-- print the results as one JSON line with exact percentiles (microseconds).
--
-- Arguments (after `--`):  BODY_FILE CONTENT_TYPE [Header=value ...] [rotate=Header=v1,v2,...]
-- `rotate` sends the values of Header in turn, one per request (e.g. the target container of
-- a Direct endpoint, to spread the load evenly over its containers).

local rotate_header = nil
local rotate_values = {}
local rotate_next = 1

-- read_file() and done(), shared with the other scripts
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.method = "POST"
  wrk.body = read_file(args[1])
  wrk.headers["Content-Type"] = args[2]
  for i = 3, #args do
    local name, value = string.match(args[i], "^([^=]+)=(.*)$")
    if name == "rotate" then
      local header, list = string.match(value, "^([^=]+)=(.*)$")
      rotate_header = header
      for item in string.gmatch(list, "[^,]+") do
        table.insert(rotate_values, item)
      end
    elseif name ~= nil then
      wrk.headers[name] = value
    end
  end
  if rotate_header ~= nil then
    -- a different first value per connection start keeps threads from moving in lockstep
    rotate_next = math.random(#rotate_values)
    request = function()
      wrk.headers[rotate_header] = rotate_values[rotate_next]
      rotate_next = rotate_next % #rotate_values + 1
      return wrk.format()
    end
  end
end
