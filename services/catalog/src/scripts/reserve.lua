-- Reserves one order line of one product, earliest best-before first.
-- Every key belongs to the product's hash slot.
--
-- KEYS[1] product hash   KEYS[2] lots hash   KEYS[3] lots by best-before (zset)
-- KEYS[4] reservations hash (order id -> record)
-- KEYS[5] settled records (zset: order id by the time it was settled)
-- ARGV[1] order id   ARGV[2] quantity   ARGV[3] first acceptable best-before day
-- ARGV[4] now (unix ms)   ARGV[5] how long a settled record is kept (ms)
--
-- First forgets up to 8 records settled longer ago than that.
-- A record is STATE|...:
--   R|unit_price|lot=qty;lot=qty   reserved
--   N|requested|available          not enough stock
--   X|…  B|…  C|…                  released, rolled back, committed (as R)
--   T                              released before it was ever reserved
-- Returns {'existing', record} when the order already has a record (nothing
-- changes), {'new', record} otherwise, or {'unknown'} for no such product.
local now = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[5]), 'LIMIT', 0, 8)
for _, order in ipairs(expired) do
  redis.call('HDEL', KEYS[4], order)
  redis.call('ZREM', KEYS[5], order)
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
  record = 'R|' .. price .. '|' .. table.concat(parts, ';')
end
redis.call('HSET', KEYS[4], ARGV[1], record)
return {'new', record}
