-- One counter's rolling window: exactly sluice_engine::window's arithmetic.
--
-- RedisState runs "take" and "refund" here; "check" and "level" change nothing and are
-- answered from plain reads (TIME + HGETALL) with the same arithmetic in level.rs. They stay
-- here as the reference the Rust side mirrors.
--
-- KEYS[1]  the counter's hash: field = sub-bucket index, value = count
-- ARGV[1]  mode: "level" | "check" | "take" | "refund"
-- ARGV[2]  now in ms since the epoch, or "-1" to read Redis's own clock (TIME)
-- ARGV[3]  cost (ignored by "level")
-- ARGV[4]  limit
-- ARGV[5]  period_ms
-- ARGV[6]  bucket_ms
--
-- Returns {fits, level, retry_after_ms, now}:
--   level: the level before the op ("check"/"take"), the level after ("refund"/"level");
--   fits: 1 if cost fits (always 1 for "level"/"refund"); a fitting "take" has been charged;
--   retry_after_ms: -1 when the cost can never fit (cost > limit), else ms until it fits;
--   now: the time used (a refund passes the take's time back so it hits the same bucket).
local mode = ARGV[1]
local now = tonumber(ARGV[2])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local cost = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local period = tonumber(ARGV[5])
local width = tonumber(ARGV[6])

local oldest = math.floor(math.max(now - period, 0) / width)
local cur = math.floor(now / width)

-- Live buckets, oldest first.
local raw = redis.call('HGETALL', KEYS[1])
local idx = {}
local cnt = {}
local name = {}
for i = 1, #raw, 2 do
  local j = tonumber(raw[i])
  idx[#idx + 1] = j
  cnt[j] = tonumber(raw[i + 1])
  name[j] = raw[i]
end

-- Integers as plain decimal text (never exponent notation).
local function fmt(x)
  return string.format('%.0f', x)
end
table.sort(idx)

local function level()
  local used = 0
  for _, j in ipairs(idx) do
    if j >= oldest then used = used + cnt[j] end
  end
  return used
end

if mode == 'level' then
  return {1, level(), 0, now}
end

if mode == 'refund' then
  -- Take back from the newest buckets not after the take's bucket.
  local left = cost
  for k = #idx, 1, -1 do
    local j = idx[k]
    if left == 0 then break end
    if j <= cur then
      local d = math.min(left, cnt[j])
      if d > 0 then
        cnt[j] = cnt[j] - d
        left = left - d
        if cnt[j] == 0 then
          redis.call('HDEL', KEYS[1], name[j])
        else
          redis.call('HSET', KEYS[1], name[j], fmt(cnt[j]))
        end
      end
    end
  end
  return {1, level(), 0, now}
end

if mode == 'take' then
  -- Prune buckets no longer counted.
  local kept = {}
  for _, j in ipairs(idx) do
    if j < oldest then
      redis.call('HDEL', KEYS[1], name[j])
      cnt[j] = nil
    else
      kept[#kept + 1] = j
    end
  end
  idx = kept
end

local used = level()
if used + cost <= limit then
  if mode == 'take' and cost > 0 then
    -- Charge the current bucket, or the newest one if the clock went backwards.
    local target = cur
    if #idx > 0 and idx[#idx] > cur then target = idx[#idx] end
    local field = name[target]
    redis.call('HINCRBY', KEYS[1], field or fmt(target), fmt(cost))
    if not field then
      -- A new bucket: the key lives until it is no longer counted. An existing bucket got
      -- its expiry when it was created, and older buckets stop being counted earlier.
      local ttl = math.max(period + width, (target + 1) * width + period - now)
      redis.call('PEXPIRE', KEYS[1], fmt(ttl))
    end
  end
  return {1, used, 0, now}
end

-- Refused: when would it fit?
local retry = 0
if cost > limit then
  retry = -1
else
  local left = used
  for _, j in ipairs(idx) do
    if j >= oldest then
      left = left - cnt[j]
      if left + cost <= limit then
        retry = math.max((j + 1) * width + period - now, 0)
        break
      end
    end
  end
end
return {0, used, retry, now}
