-- Takes the shipments whose next attempt is due, for one replica: each is
-- pushed a lease into the future, so no other replica takes it meanwhile, and
-- another one will if this one dies before it is done.
--
-- KEYS[1] pending shipments (zset, scored by next attempt, unix ms)
-- ARGV[1] now (unix ms)   ARGV[2] lease (ms)   ARGV[3] how many at most
--
-- Returns the shipment ids taken.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, shipment in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, shipment)
end
return due
