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
-- ARGV[7]  "take" only, optional: lease want, the extra units the caller would like to admit
--          from locally (absent or 0: none)
--
-- Returns {fits, level, retry_after_ms, now, leased, valid_ms}:
--   level: the level before the op ("check"/"take"), the level after ("refund"/"level");
--   fits: 1 if cost fits (always 1 for "level"/"refund"); a fitting "take" has been charged;
--   retry_after_ms: -1 when the cost can never fit (cost > limit), else ms until it fits;
--   now: the time used (a refund passes the take's time back so it hits the same bucket);
--   leased ("take" only, else 0): extra units charged with a fitting take, exactly
--     sluice_engine::window::lease_units: at most a quarter of the room left above half the
--     limit and at most 1/64 of the limit, none when the bucket ends within MIN_LEASE_MS (50); charged to the same bucket
--     in the same HINCRBY as the cost (the level returned does not include them);
--   valid_ms ("take" only, else 0): ms until the current sub-bucket ends (lease_valid_ms).
--
-- The common paths (a take or check that fits, a level) make one pass over the buckets;
-- only a refund or a refusal sorts them.
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
local want = tonumber(ARGV[7] or '0') or 0
local key = KEYS[1]

local oldest = math.floor(math.max(now - period, 0) / width)
local cur = math.floor(now / width)
local raw = redis.call('HGETALL', key)

if mode == 'refund' then
  -- Take back from the newest buckets not after the take's bucket.
  local idx, cnt, name = {}, {}, {}
  for i = 1, #raw, 2 do
    local j = tonumber(raw[i])
    idx[#idx + 1] = j
    cnt[j] = tonumber(raw[i + 1])
    name[j] = raw[i]
  end
  table.sort(idx)
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
          redis.call('HDEL', key, name[j])
        else
          redis.call('HSET', key, name[j], string.format('%.0f', cnt[j]))
        end
      end
    end
  end
  local used = 0
  for _, j in ipairs(idx) do
    if j >= oldest then used = used + cnt[j] end
  end
  return {1, used, 0, now, 0, 0}
end

-- One pass: the level, the newest live bucket, the current bucket's field; a take also
-- prunes the buckets no longer counted.
local used = 0
local newest = -1
local newest_name = nil
for i = 1, #raw, 2 do
  local j = tonumber(raw[i])
  if j >= oldest then
    used = used + tonumber(raw[i + 1])
    if j > newest then
      newest = j
      newest_name = raw[i]
    end
  elseif mode == 'take' then
    redis.call('HDEL', key, raw[i])
  end
end

if mode == 'level' then
  return {1, used, 0, now, 0, 0}
end

if used + cost <= limit then
  local leased, valid = 0, 0
  if mode == 'take' then
    valid = (cur + 1) * width - now
    if want > 0 and valid >= 50 then
      -- lease_units: reserve = ceil(limit / 2); a quarter of the room above it, at most
      -- 1/64 of the limit.
      local room = math.max(limit - math.floor((limit + 1) / 2) - (used + cost), 0)
      leased = math.min(want, math.floor(room / 4), math.floor(limit / 64))
    end
  end
  local charge = cost + leased
  if mode == 'take' and charge > 0 then
    -- Charge the current bucket, or the newest one if the clock went backwards.
    if newest >= cur then
      redis.call('HINCRBY', key, newest_name, string.format('%.0f', charge))
    else
      -- A new bucket: the key lives until it is no longer counted. An existing bucket got
      -- its expiry when it was created, and older buckets stop being counted earlier.
      redis.call('HINCRBY', key, string.format('%.0f', cur), string.format('%.0f', charge))
      local ttl = math.max(period + width, (cur + 1) * width + period - now)
      redis.call('PEXPIRE', key, string.format('%.0f', ttl))
    end
  end
  return {1, used, 0, now, leased, valid}
end

-- Refused: when would it fit? Live buckets oldest first.
local retry = 0
if cost > limit then
  retry = -1
else
  local idx, cnt = {}, {}
  for i = 1, #raw, 2 do
    local j = tonumber(raw[i])
    if j >= oldest then
      idx[#idx + 1] = j
      cnt[j] = tonumber(raw[i + 1])
    end
  end
  table.sort(idx)
  local left = used
  for _, j in ipairs(idx) do
    left = left - cnt[j]
    if left + cost <= limit then
      retry = math.max((j + 1) * width + period - now, 0)
      break
    end
  end
end
return {0, used, retry, now, 0, 0}
