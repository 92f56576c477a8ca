-- Records the provider's answer to an authorization: at most one per order.
--
-- KEYS[1] payment hash   KEYS[2] ledger entries (list)
-- ARGV[1] 'authorized' | 'declined'   ARGV[2] provider reference | decline reason
-- ARGV[3] the event to publish (encoded envelope)   ARGV[4] now (unix ms)
-- ARGV[5] the authorization's ledger entry (authorized only)
--
-- Returns {'recorded', state}, or {'existing', state} when the payment is
-- not waiting for an answer (nothing changes).
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'authorizing' then
  return {'existing', state or ''}
end
if ARGV[1] == 'authorized' then
  if tonumber(redis.call('HGET', KEYS[1], 'authorized')) ~= 0 then
    return redis.error_reply('the payment is already authorized')
  end
  redis.call('HSET', KEYS[1],
    'state', 'authorized',
    'authorized', redis.call('HGET', KEYS[1], 'amount'),
    'reference', ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[5])
else
  redis.call('HSET', KEYS[1], 'state', 'declined', 'decline_reason', ARGV[2])
end
redis.call('HSET', KEYS[1], 'event:authorization', ARGV[3], 'updated_ms', ARGV[4])
return {'recorded', redis.call('HGET', KEYS[1], 'state')}
