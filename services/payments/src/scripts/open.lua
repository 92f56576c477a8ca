-- Opens an order's payment: starts its authorization, or, when the order is
-- cancelled before any payment exists, marks it so that a late authorization
-- is refused. Touches one order's hash only.
--
-- KEYS[1] payment hash
-- ARGV[1] 'authorize' | 'cancel'   ARGV[2] now (unix ms)
-- authorize: ARGV[3] payment id   ARGV[4] buyer id   ARGV[5] region
--            ARGV[6] payment method   ARGV[7] amount in fen
-- cancel:    ARGV[3] keep the mark this long (ms): the retention, longer than
--            the streams keep a late authorization's event
--
-- Returns {'opened', state} when it created the payment, otherwise
-- {'existing', state} and nothing changes.
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  return {'existing', state}
end
if ARGV[1] == 'cancel' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'created_ms', ARGV[2], 'updated_ms', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'opened', 'cancelled'}
end
if not (tonumber(ARGV[7]) > 0) then
  return redis.error_reply('an authorization needs a positive amount')
end
redis.call('HSET', KEYS[1],
  'state', 'authorizing',
  'payment_id', ARGV[3],
  'buyer_id', ARGV[4],
  'region', ARGV[5],
  'method', ARGV[6],
  'amount', ARGV[7],
  'authorized', 0,
  'captured', 0,
  'refunded', 0,
  'refund_pending', '',
  'created_ms', ARGV[2],
  'updated_ms', ARGV[2])
return {'opened', 'authorizing'}
