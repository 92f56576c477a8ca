-- Ends a reservation: releases it (a cancelled order), rolls it back (a later
-- line of the order failed) or commits it (the goods were picked up).
-- Every key belongs to the product's hash slot.
--
-- KEYS[1] lots hash   KEYS[2] reservations hash
-- KEYS[3] settled records (zset: order id by the time it was settled)
-- KEYS[4] buyers hash   KEYS[5] buyers by their latest reservation (zset)
-- (see buyer_holding.lua, which is put in front of this script)
-- ARGV[1] order id    ARGV[2] 'release' | 'rollback' | 'commit'
-- ARGV[3] now (unix ms)
--
-- Only a reserved (R) record changes; any other record is returned as it is,
-- so repeating a call changes nothing. Releasing an order with no record
-- leaves a T record, so a late reservation for it is refused. A release or
-- rollback also takes the order out of its buyer's reservations, so its units
-- no longer count towards the per-buyer limit; committed units still count.
-- Returns {'changed' | 'unchanged', record}.
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then
  if ARGV[2] == 'release' then
    redis.call('HSET', KEYS[2], ARGV[1], 'T')
    redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
    return {'changed', 'T'}
  end
  return {'unchanged', ''}
end
if string.sub(record, 1, 1) ~= 'R' then
  return {'unchanged', record}
end

local allocations = string.match(record, '^R|[^|]*|([^|]*)')
for lot, qty in string.gmatch(allocations, '([^=;]+)=(%d+)') do
  redis.call('HINCRBY', KEYS[1], lot .. '|reserved', -tonumber(qty))
  if ARGV[2] == 'commit' then
    redis.call('HINCRBY', KEYS[1], lot .. '|on_hand', -tonumber(qty))
  end
end

-- Records from before per-buyer limits name no buyer.
local buyer = string.match(record, '^R|[^|]*|[^|]*|(.+)$')
if buyer and ARGV[2] ~= 'commit' then
  local holding = {}
  for _, entry in ipairs(read_holding(KEYS[4], buyer)) do
    if entry.order ~= ARGV[1] then
      holding[#holding + 1] = entry.text
    end
  end
  write_holding(KEYS[4], KEYS[5], buyer, holding)
end

local state = ({release = 'X', rollback = 'B', commit = 'C'})[ARGV[2]]
local settled = state .. string.sub(record, 2)
redis.call('HSET', KEYS[2], ARGV[1], settled)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return {'changed', settled}
