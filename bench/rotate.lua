-- wrk script: every request carries the next token of a pre-minted pool.
--
--   wrk -t1 -c16 -d10s --latency -s bench/rotate.lua URL -- POOL [SEQ|-] [PATH] [OFFSET] [LIMIT] [CARRIER]
--
-- POOL   file with one compact JWS per line, read once at init
-- SEQ    optional file of 0-based pool indices, one per line (e.g. a Zipf
--        sample); without it the pool is walked in order
-- PATH   request path (default /bench/)
-- OFFSET where in the pool/sequence to start (the warm-up uses another one)
-- LIMIT  use only the first LIMIT tokens of the pool (1 = the same token again
--        and again: the warm case)
-- CARRIER bearer (default): `Authorization: Bearer TOKEN`; session: the
--        cookies of Envoy's oauth2 filter after a login (IdToken=TOKEN, an
--        opaque access token `at<line>` in BearerToken, OauthHMAC,
--        OauthExpires) plus an app cookie
--
-- Requests are formatted once at init, so the script costs wrk almost nothing
-- per request. Run with one wrk thread (-t1): one Lua state, one counter.

local reqs = {}
local order = nil
local i = 0

function init(args)
  local pool = assert(args[1], "pool file argument missing")
  local seq = args[2]
  local path = args[3] or "/bench/"
  i = tonumber(args[4] or "0")
  local limit = tonumber(args[5] or "0")
  local carrier = args[6] or "bearer"
  for line in io.lines(pool) do
    if #line > 0 then
      local headers
      if carrier == "session" then
        headers = { ["Cookie"] = "lang=fi; OauthHMAC=bench-hmac-0123456789abcdef; OauthExpires=4102444800; "
          .. "BearerToken=at" .. #reqs .. "; IdToken=" .. line }
      else
        headers = { ["Authorization"] = "Bearer " .. line }
      end
      reqs[#reqs + 1] = wrk.format("GET", path, headers)
      if limit > 0 and #reqs >= limit then break end
    end
  end
  assert(#reqs > 0, "empty token pool " .. pool)
  if seq and seq ~= "-" and seq ~= "" then
    order = {}
    for line in io.lines(seq) do
      if #line > 0 then
        local k = tonumber(line) + 1
        assert(k <= #reqs, "sequence index " .. k .. " is beyond the pool of " .. #reqs)
        order[#order + 1] = k
      end
    end
  end
end

function request()
  i = i + 1
  if order then
    return reqs[order[(i - 1) % #order + 1]]
  end
  return reqs[(i - 1) % #reqs + 1]
end
