-- Reserves one order line of one product, earliest best-before first, within
-- the buyer's per-buyer limit. Every key belongs to the product's hash slot.
--
-- KEYS[1] product hash   KEYS[2] lots hash   KEYS[3] lots by best-before (zset)
-- KEYS[4] reservations hash (order id -> record)
-- KEYS[5] settled records (zset: order id by the time it was settled)
-- KEYS[6] buyers hash   KEYS[7] buyers by their latest reservation (zset)
-- (see buyer_holding.lua, which is put in front of this script)
-- ARGV[1] order id   ARGV[2] quantity   ARGV[3] first acceptable best-before day
-- ARGV[4] now (unix ms)   ARGV[5] how long a settled record is kept (ms)
-- ARGV[6] buyer id   ARGV[7] per-buyer limit of products without their own
-- (0: none)   ARGV[8] per-buyer window (ms)
--
-- First forgets up to 8 records settled longer ago than the retention, and
-- up to 8 buyers whose latest reservation is older than the window.
-- A record is STATE|...:
--   R|unit_price|lot=qty;lot=qty|buyer   reserved
--   N|requested|available                not enough stock
--   L|requested|limit|holds              over the per-buyer limit
--   X|…  B|…  C|…                        released, rolled back, committed (as R)
--   T                                    released before it was ever reserved
-- The limit is the product hash's `per_buyer_limit`, else ARGV[7]. It counts
-- the units of the buyer's reservations made within the window (a reservation
-- settle.lua releases or rolls back is taken out); a line that would take the
-- buyer above it is refused before the stock is looked at.
-- Returns {'existing', record} when the order already has a record (nothing
-- changes), {'new', record} otherwise, or {'unknown'} for no such product.
local now = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[5]), 'LIMIT', 0, 8)
for _, order in ipairs(expired) do
  redis.call('HDEL', KEYS[4], order)
  redis.call('ZREM', KEYS[5], order)
end
local since = now - tonumber(ARGV[8])
local idle = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', since, 'LIMIT', 0, 8)
for _, idle_buyer in ipairs(idle) do
  redis.call('HDEL', KEYS[6], idle_buyer)
  redis.call('ZREM', KEYS[7], idle_buyer)
end

local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then
  return {'existing', existing}
end
local price = redis.call('HGET', KEYS[1], 'price_fen')
if not price then
  return {'unknown'}
end

local wanted = tonumber(ARGV[2])
local buyer = ARGV[6]

-- The buyer's reservations still within the window, and their units.
local holding = {}
local holds = 0
for _, entry in ipairs(read_holding(KEYS[6], buyer)) do
  if entry.at > since then
    holding[#holding + 1] = entry.text
    holds = holds + entry.units
  end
end

local limit = tonumber(redis.call('HGET', KEYS[1], 'per_buyer_limit') or '0')
if limit <= 0 then
  limit = tonumber(ARGV[7])
end
if limit > 0 and holds + wanted > limit then
  write_holding(KEYS[6], KEYS[7], buyer, holding)
  local record = 'L|' .. wanted .. '|' .. limit .. '|' .. holds
  redis.call('HSET', KEYS[4], ARGV[1], record)
  redis.call('ZADD', KEYS[5], now, ARGV[1])
  return {'new', record}
end

local remaining = wanted
local available_total = 0
local plan = {}
local lots = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[3], '+inf')
for _, lot in ipairs(lots) do
  local on_hand = tonumber(redis.call('HGET', KEYS[2], lot .. '|on_hand') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[2], lot .. '|reserved') or '0')
  local available = on_hand - reserved
  if available > 0 then
    available_total = available_total + available
    if remaining > 0 then
      local take = math.min(available, remaining)
      plan[#plan + 1] = {lot, take}
      remaining = remaining - take
    end
  end
end

local record
if remaining > 0 then
  record = 'N|' .. wanted .. '|' .. available_total
  redis.call('ZADD', KEYS[5], now, ARGV[1])
else
  local parts = {}
  for i, step in ipairs(plan) do
    redis.call('HINCRBY', KEYS[2], step[1] .. '|reserved', step[2])
    parts[i] = step[1] .. '=' .. step[2]
  end
  record = 'R|' .. price .. '|' .. table.concat(parts, ';') .. '|' .. buyer
  holding[#holding + 1] = ARGV[1] .. '=' .. wanted .. '@' .. now
  redis.call('ZADD', KEYS[7], now, buyer)
end
write_holding(KEYS[6], KEYS[7], buyer, holding)
redis.call('HSET', KEYS[4], ARGV[1], record)
return {'new', record}
