-- claude-proxy admission: every limit of every scope of one request, in one atomic call.
-- Time is Redis TIME (one clock for the fleet). Nothing is written unless everything passes.
-- KEYS[1] = the key's revocation flag; then per scope i (0-based) 4 keys from 2 + 4i:
--   rpm state, tpm state, lease hash, spend prefix (the month is appended here, from Redis time);
--   last, the fleet's epoch (cp:epoch).
-- ARGV[1]: a JSON array of: rid, reserve_tokens, reserve_micros, lease_ms, n_scopes, then per scope 6 values from 6 + 6i:
--   rpm amount, rpm period, tpm amount, tpm period, max_concurrent, budget micros (-1 = none);
--   last, the epoch the caller's key snapshot was taken under ('-' = no check: a static key).
-- The epoch check makes the admission the request's only round trip: an admin change since the snapshot
-- answers STALE before anything is written. (cp:epoch is fleet-wide, so this needs one Redis, not a Cluster.)
local ARGV = cjson.decode(ARGV[1])  -- the arguments come as one JSON array: one bulk string to send, not ~30
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local EPS = 1e-9

local function fmt(x) return string.format('%.17g', x) end

local function month_of(secs)
  local z = math.floor(secs / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d', y, m)
end

-- a limit's TAT, rescaled when the limit changed since it was written (units used stay used)
local function read_tat(key, step)
  local v = redis.call('HMGET', key, 'tat', 'step')
  if not v[1] then return nil end
  local tat, old = tonumber(v[1]), tonumber(v[2])
  if tat <= now or old == step or not old or old == 0 then return tat end
  return now + (tat - now) / old * step
end

if redis.call('EXISTS', KEYS[1]) == 1 then return {'REVOKED'} end
local expected = ARGV[#ARGV]
if expected ~= '-' then
  local fleet = redis.call('GET', KEYS[#KEYS])
  if not fleet then return {'NO_EPOCH'} end
  if tonumber(fleet) ~= tonumber(expected) then return {'STALE', fleet} end
end
local rid, rtok, rmic = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_ms, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local month = month_of(tonumber(t[1]))
local writes, leases = {}, {}
local out = {'OK', t[1], t[2], month}
for i = 0, n - 1 do
  local kb, ab = 2 + 4 * i, 6 + 6 * i
  local room = {-1, -1, -1, -1}
  for j = 0, 1 do
    local amount, period = tonumber(ARGV[ab + 2 * j]), tonumber(ARGV[ab + 2 * j + 1])
    if amount >= 0 then
      local cost = 1
      if j == 1 then cost = math.min(rtok, amount) end
      local key = KEYS[kb + j]
      if amount <= 0 then return {'REFUSED', tostring(j), tostring(i), fmt(period)} end
      local step = period / amount
      local tat = read_tat(key, step)
      local base = now
      if tat and tat > now then base = tat end
      local new_tat = base + cost * step
      local over = new_tat - now - period
      if over > EPS then return {'REFUSED', tostring(j), tostring(i), fmt(math.max(over, 0.001))} end
      writes[#writes + 1] = {key, new_tat, step}
      room[j + 1] = math.max(0, math.floor((period - (new_tat - now)) / step + EPS))
    end
  end
  local maxc, budget = tonumber(ARGV[ab + 4]), tonumber(ARGV[ab + 5])
  if maxc >= 0 or budget >= 0 then
    local lk = KEYS[kb + 2]
    local all = redis.call('HGETALL', lk)
    local count, reserved = 0, 0
    for idx = 1, #all, 2 do
      local exp, _, mic = string.match(all[idx + 1], '([^:]+):([^:]+):([^:]+)')
      if tonumber(exp) < now then
        redis.call('HDEL', lk, all[idx])
      else
        count = count + 1
        reserved = reserved + tonumber(mic)
      end
    end
    if maxc >= 0 then
      if count >= maxc then return {'REFUSED', '2', tostring(i), '1'} end
      room[3] = maxc - count - 1
    end
    if budget >= 0 then
      local spent = redis.call('GET', KEYS[kb + 3] .. month)
      if not spent then return {'NEED_SEED', tostring(i), month} end
      spent = tonumber(spent)
      if spent + reserved + rmic >= budget then return {'REFUSED', '3', tostring(i), '0'} end
      room[4] = budget - spent - reserved
    end
    leases[#leases + 1] = lk
  end
  for j = 1, 4 do out[#out + 1] = tostring(room[j]) end
end
for _, w in ipairs(writes) do
  redis.call('HSET', w[1], 'tat', fmt(w[2]), 'step', fmt(w[3]))
  redis.call('PEXPIRE', w[1], math.ceil((w[2] - now) * 1000) + 1000)
end
local value = fmt(now + lease_ms / 1000) .. ':' .. tostring(rtok) .. ':' .. tostring(rmic)
for _, lk in ipairs(leases) do
  redis.call('HSET', lk, rid, value)
  redis.call('PEXPIRE', lk, lease_ms * 2)
end
return out
