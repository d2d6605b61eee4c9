-- wrk script for bench/session.py: the same request again and again, its
-- headers read once from a file of "Name: value" lines.
--
--   wrk -t1 -c16 -d10s -s bench/session.lua URL -- HEADERS_FILE [PATH]

local req = nil

function init(args)
  local file = assert(args[1], "headers file argument missing")
  local path = args[2] or "/bench/"
  local headers = {}
  for line in io.lines(file) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
  end
  req = wrk.format("GET", path, headers)
end

function request()
  return req
end
