-- Gives back the unit of capacity a shipment holds on a courier. Repeating it
-- changes nothing.
--
-- KEYS[1] courier hash   KEYS[2] the courier's open shipments (zset)
-- ARGV[1] shipment id
--
-- Returns 1 when a unit was given back, 0 when the shipment held none.
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[1], 'load', -1) < 0 then
  redis.call('HSET', KEYS[1], 'load', 0)
end
return 1
