-- Takes one unit of a courier's capacity for a shipment, if the courier can
-- carry it. Every key belongs to the courier's hash slot, so two shipments can
-- never both take the last unit.
--
-- KEYS[1] courier hash   KEYS[2] the courier's open shipments (zset)
-- ARGV[1] shipment id   ARGV[2] region whose couriers may carry it
-- ARGV[3] needs cold chain (0|1)   ARGV[4] now (unix ms)
--
-- Returns 'claimed', 'held' (this shipment already holds a unit: nothing
-- changes), or why not: 'unknown', 'elsewhere', 'unavailable', 'no_cold_chain',
-- 'full'.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'unknown'
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 'held'
end
local courier = redis.call('HMGET', KEYS[1], 'region', 'available', 'cold_chain', 'load', 'capacity')
if courier[1] ~= ARGV[2] then
  return 'elsewhere'
end
if courier[2] ~= '1' then
  return 'unavailable'
end
if ARGV[3] == '1' and courier[3] ~= '1' then
  return 'no_cold_chain'
end
if tonumber(courier[4] or '0') >= tonumber(courier[5] or '0') then
  return 'full'
end
redis.call('HINCRBY', KEYS[1], 'load', 1)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 'claimed'
