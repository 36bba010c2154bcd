-- Counters' rolling windows: exactly sluice_engine::window's arithmetic, for one counter or
-- for several counters of one node in one call.
--
-- RedisState sends every counter op (take, refund, check, level) here when several are
-- waiting for the same node at once (one call per node and scheduler tick, see
-- coalesce.rs); a lone "check" or "level" is answered from plain reads (TIME + HGETALL)
-- with the same arithmetic in level.rs, a lone "take" or "refund" comes here with its key
-- declared.
--
-- KEYS     empty (several items: the keys are in ARGV, on this node but in any slots), or
--          the key of the one item (so that Redis redirects the call to the key's node)
-- ARGV[1]  the number of items n, then 8 arguments per item:
--   key      the counter's hash: field = sub-bucket index, value = count
--   mode     "level" | "check" | "take" | "refund"
--   now      ms since the epoch, or "-1" to read Redis's own clock (TIME, read once per
--            call and used for every item that asks for it)
--   cost     (ignored by "level")
--   limit
--   period_ms
--   bucket_ms
--   want     "take" only: lease want, the extra units the caller would like to admit from
--            locally (0: none)
--
-- Returns one reply per item, in order: {fits, level, retry_after_ms, now, leased, valid_ms},
-- or {-1} when the item's key is not served by this node (a slot that moved or is being
-- migrated; a replica): nothing of that item ran, the caller sends it again on its own, to
-- its slot's node. Each item's key is read (HGETALL, catching the error) before anything of
-- the item is written, so an item either runs whole or not at all.
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
--
-- Numbers written back are formatted with '%d' (Lua 5.1 converts to a C long: the same
-- digits as '%.0f' for every whole number below 2^63, and every value here is whole and
-- far below that), not '%.0f', which glibc formats through multi-precision arithmetic
-- (~10 % of this script's time on new keys).

local clock = nil
local function redis_now()
  if clock == nil then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end

-- One item; `raw` is the counter's HGETALL.
local function run(key, raw, mode, now, cost, limit, period, width, want)
  local oldest = math.floor(math.max(now - period, 0) / width)
  local cur = math.floor(now / width)

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
            redis.call('HSET', key, name[j], string.format('%d', cnt[j]))
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
        redis.call('HINCRBY', key, newest_name, string.format('%d', charge))
      else
        -- A new bucket: the key lives until it is no longer counted. An existing bucket got
        -- its expiry when it was created, and older buckets stop being counted earlier.
        redis.call('HINCRBY', key, string.format('%d', cur), string.format('%d', charge))
        local ttl = math.max(period + width, (cur + 1) * width + period - now)
        redis.call('PEXPIRE', key, string.format('%d', ttl))
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
end

local n = tonumber(ARGV[1])
local out = {}
for i = 0, n - 1 do
  local b = 2 + i * 8
  local key = ARGV[b]
  -- Not served here (redirect, cluster down, ...): an error instead of the fields, and
  -- nothing of this item has run.
  local raw = redis.pcall('HGETALL', key)
  if raw.err then
    out[i + 1] = {-1}
  else
    local now = tonumber(ARGV[b + 2])
    if now < 0 then now = redis_now() end
    out[i + 1] = run(key, raw, ARGV[b + 1], now, tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]),
      tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]))
  end
end
return out
