-- CheckHelo: one request's HELO on its client address's record, exactly
-- sluice_engine::checkhelo::record::run (its Rust home; the equivalence test holds the two
-- to the same answers).
--
-- KEYS[1]  the address's hash: "k" = the longest window asked (ms), "b" = blacklisted
--          until (ms since the epoch), "h<helo>" = when that HELO was last used
-- ARGV[1]  now in ms, or "-1" to read Redis's own clock (TIME)
-- ARGV[2]  dry run: "1" changes nothing
-- ARGV[3]  the HELO, lower-cased by the caller
-- ARGV[4]  hrp_window_ms (0: HRP off)   ARGV[5] hrp_limit
-- ARGV[6]  blacklist_ms (0: off)        ARGV[7] this HELO is blacklisted ("1"/"0")
-- ARGV[8]  the most HELOs kept
--
-- Returns {kind, a, now}: kind 1 passed (a = distinct HELOs in the window, 0 without HRP),
-- 2 blacklisted (a = until), 3 HRP limit exceeded (a = distinct HELOs in the window).
--
-- Entries older than the longest window are deleted when the address is seen; the key's
-- TTL is extended to its latest expiry, so an idle address disappears by itself.
local key = KEYS[1]
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local dry = ARGV[2] == '1'
local field = 'h' .. ARGV[3]
local hrp_window = tonumber(ARGV[4])
local hrp_limit = tonumber(ARGV[5])
local bl_ms = tonumber(ARGV[6])
local bl_now = ARGV[7] == '1'
local max_helos = tonumber(ARGV[8])

local function fmt(n) return string.format('%d', n) end

local raw = redis.call('HGETALL', key)
local keep, bl_until = 0, 0
local helos = {}
for i = 1, #raw, 2 do
  local f = raw[i]
  if f == 'k' then
    keep = tonumber(raw[i + 1])
  elseif f == 'b' then
    bl_until = tonumber(raw[i + 1])
  elseif string.byte(f, 1) == 104 then -- 'h'
    helos[#helos + 1] = {f, tonumber(raw[i + 1])}
  end
end
keep = math.max(keep, hrp_window, bl_ms)
if bl_now and bl_ms > 0 then bl_until = math.max(bl_until, now + bl_ms) end

local distinct = 0
for _, h in ipairs(helos) do
  if h[1] ~= field and hrp_window > 0 and now - h[2] < hrp_window then
    distinct = distinct + 1
  end
end
if hrp_window > 0 then distinct = distinct + 1 end

if not dry then
  local gone, live = {}, {}
  local present = false
  for _, h in ipairs(helos) do
    if h[2] + keep <= now then
      gone[#gone + 1] = h[1]
    else
      live[#live + 1] = h
      if h[1] == field then present = true end
    end
  end
  if not present and #live >= max_helos then
    -- The least recently used goes (ties: the smallest name).
    local oldest = nil
    for _, h in ipairs(live) do
      if oldest == nil or h[2] < oldest[2] or (h[2] == oldest[2] and h[1] < oldest[1]) then
        oldest = h
      end
    end
    gone[#gone + 1] = oldest[1]
  end
  for i = 1, #gone, 1000 do
    redis.call('HDEL', key, unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('HSET', key, field, fmt(now), 'k', fmt(keep), 'b', fmt(bl_until))
  local want = math.max(now + keep, bl_until) - now
  if want > 0 and redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
end

if bl_ms > 0 and bl_until > now then return {2, bl_until, now} end
if hrp_window > 0 and hrp_limit > 0 and distinct > hrp_limit then return {3, distinct, now} end
if hrp_window == 0 then distinct = 0 end
return {1, distinct, now}
