-- Greylisting: one request on its client network's record, exactly
-- sluice_engine::greylisting::record::run (its Rust home; the equivalence test holds the two
-- to the same answers).
--
-- KEYS[1]  the network's hash: "w" = auto-whitelist "added:expires", "b" = auto-blacklist
--          "added:expires", "t<sender>\n<recipient>" = triplet
--          "first_seen:last_update:tries:count:expires" (times in ms since the epoch)
-- ARGV[1]  now in ms, or "-1" to read Redis's own clock (TIME)
-- ARGV[2]  dry run: "1" changes nothing
-- ARGV[3]  the triplet field (sender "\n" recipient)
-- ARGV[4]  period_ms       ARGV[5] auth_validity_ms   ARGV[6] unauth_validity_ms
-- ARGV[7]  auto-whitelist on ("1"/"0"), ARGV[8] its period_ms, ARGV[9] count, ARGV[10] percentage
-- ARGV[11] auto-blacklist on ("1"/"0"), ARGV[12] its period_ms, ARGV[13] count, ARGV[14] percentage
-- ARGV[15] training ("1"/"0")
--
-- Returns {kind, a, b, c, d, now}:
--   kind 1 auto-whitelisted: a = until
--   kind 2 blacklisted: a = until, b = 1 if listed by this request, c = total, d = failed
--   kind 3 deferred: a = first seen, b = passes at, c = tries
--   kind 4 passed: a = first seen, b = 1 if training let it through, c = auto-whitelisted
--          until (-1: not listed by this pass)
--
-- An expired entry counts as absent. Expired triplets are deleted when the network gains a
-- triplet; the key's TTL is extended to the latest expiry written, so a network whose
-- entries all expired disappears by itself (no cleanup job).
local key = KEYS[1]
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local dry = ARGV[2] == '1'
local field = 't' .. ARGV[3]
local period = tonumber(ARGV[4])
local auth = tonumber(ARGV[5])
local unauth = tonumber(ARGV[6])
local awl_on = ARGV[7] == '1'
local awl_period, awl_count, awl_pct = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local abl_on = ARGV[11] == '1'
local abl_period, abl_count, abl_pct = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local training = ARGV[15] == '1'

local function fmt(n) return string.format('%d', n) end
local function split(v)
  local out = {}
  for p in string.gmatch(v, '[^:]+') do out[#out + 1] = tonumber(p) end
  return out
end

local latest = 0
local function put(f, v, expires)
  if not dry then redis.call('HSET', key, f, v) end
  if expires > latest then latest = expires end
end
local function done(r)
  if not dry and latest > now then
    local want = latest - now
    if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
  end
  r[6] = now
  return r
end

-- Live triplets first seen at or after since, and of them those that passed.
local function tally(since)
  local raw = redis.call('HGETALL', key)
  local total, passed = 0, 0
  for i = 1, #raw, 2 do
    if string.byte(raw[i], 1) == 116 then -- 't'
      local t = split(raw[i + 1])
      if t[5] > now and t[1] >= since then
        total = total + 1
        if t[4] > 0 then passed = passed + 1 end
      end
    end
  end
  return total, passed
end

local function listed(count, pct, total, hits)
  if count == 0 or total == 0 or total < count then return false end
  if pct > 0 then return hits * 100 >= pct * total end
  return hits >= count
end

if awl_on then
  local w = redis.call('HGET', key, 'w')
  if w then
    local l = split(w)
    if l[2] > now then
      local u = now + awl_period
      put('w', fmt(l[1]) .. ':' .. fmt(u), u)
      return done({1, u, 0, 0, 0})
    end
  end
end
if not training and abl_on then
  local b = redis.call('HGET', key, 'b')
  if b then
    local l = split(b)
    if l[2] > now then return done({2, l[2], 0, 0, 0}) end
  end
end

local tv = redis.call('HGET', key, field)
local t = nil
if tv then
  t = split(tv)
  if t[5] <= now then t = nil end
end

if not t then
  if abl_on and not training then
    local total, passed = tally(math.max(now - abl_period, 0))
    local failed = total - passed
    if listed(abl_count, abl_pct, total, failed) then
      local u = now + abl_period
      put('b', fmt(now) .. ':' .. fmt(u), u)
      return done({2, u, 1, total, failed})
    end
  end
  -- A new triplet: the network's expired entries go first (it grows here).
  if not dry then
    local raw = redis.call('HGETALL', key)
    local gone = {}
    for i = 1, #raw, 2 do
      local e = split(raw[i + 1])
      local exp = (string.byte(raw[i], 1) == 116) and e[5] or e[2]
      if exp <= now then gone[#gone + 1] = raw[i] end
    end
    for i = 1, #gone, 1000 do
      redis.call('HDEL', key, unpack(gone, i, math.min(i + 999, #gone)))
    end
  end
  local exp = now + unauth
  put(field, fmt(now) .. ':' .. fmt(now) .. ':1:0:' .. fmt(exp), exp)
  if training then return done({4, now, 1, -1, 0}) end
  return done({3, now, now + period, 1, 0})
end

local first, tries, count = t[1], t[3], t[4]
local passes_at = first + period
local early = now < passes_at
if early and not training then
  tries = tries + 1
  local exp = now + ((count > 0) and auth or unauth)
  put(field, fmt(first) .. ':' .. fmt(now) .. ':' .. fmt(tries) .. ':' .. fmt(count) .. ':' .. fmt(exp), exp)
  return done({3, first, passes_at, tries, 0})
end
count = count + 1
local exp = now + auth
put(field, fmt(first) .. ':' .. fmt(now) .. ':' .. fmt(tries) .. ':' .. fmt(count) .. ':' .. fmt(exp), exp)
local awl_until = -1
if awl_on then
  -- A dry run did not write the pass: count it as the real run would.
  local total, passed = tally(math.max(now - awl_period, 0))
  if dry then
    -- (the triplet is live, so it is in total; the pass makes it count as passed)
    if t[4] == 0 and first >= math.max(now - awl_period, 0) then passed = passed + 1 end
  end
  if listed(awl_count, awl_pct, total, passed) then
    awl_until = now + awl_period
    put('w', fmt(now) .. ':' .. fmt(awl_until), awl_until)
  end
end
return done({4, first, early and 1 or 0, awl_until, 0})
