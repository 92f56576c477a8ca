-- Claims an idempotency key for a new order, or reports who holds it.
-- One key, so one hash slot.
--
-- KEYS[1] placement hash of (buyer, idempotency key)
-- ARGV[1] new order id   ARGV[2] canonical request bytes   ARGV[3] now (ms)
-- ARGV[4] lease (ms)     ARGV[5] time to keep the key (s)
--
-- Returns {'new', order}, {'conflict', order}, or {'existing', order,
-- lease_expired} where lease_expired is 1 when the caller may take over a
-- placement whose first caller seems to have died (the lease is renewed for
-- it).
local order = redis.call('HGET', KEYS[1], 'order_id')
if not order then
  redis.call('HSET', KEYS[1], 'order_id', ARGV[1], 'request', ARGV[2],
    'lease_until', tonumber(ARGV[3]) + tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'new', ARGV[1]}
end
if redis.call('HGET', KEYS[1], 'request') ~= ARGV[2] then
  return {'conflict', order}
end
local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if lease_until < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'lease_until', tonumber(ARGV[3]) + tonumber(ARGV[4]))
  return {'existing', order, 1}
end
return {'existing', order, 0}
