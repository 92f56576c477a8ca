-- Records a capture or a void the provider approved.
--
-- KEYS[1] payment hash   KEYS[2] ledger entries (list)
-- ARGV[1] 'capture' | 'void'   ARGV[2] the event to publish (encoded envelope)
-- ARGV[3] now (unix ms)   ARGV[4] amount   ARGV[5..] ledger entries
--
-- Returns {'recorded', state}, or {'existing', state} when the payment is not
-- being settled that way (nothing changes).
local expected = ARGV[1] == 'capture' and 'capturing' or 'voiding'
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= expected then
  return {'existing', state or ''}
end
local authorized = tonumber(redis.call('HGET', KEYS[1], 'authorized'))
if ARGV[1] == 'capture' then
  if tonumber(redis.call('HGET', KEYS[1], 'captured')) ~= 0 then
    return redis.error_reply('the payment is already captured')
  end
  if tonumber(ARGV[4]) > authorized then
    return redis.error_reply('a capture may not exceed the authorization')
  end
  redis.call('HSET', KEYS[1], 'state', 'captured', 'captured', ARGV[4], 'event:capture', ARGV[2])
  redis.call('HDEL', KEYS[1], 'capture')
else
  redis.call('HSET', KEYS[1], 'state', 'voided', 'event:void', ARGV[2])
end
redis.call('HSET', KEYS[1], 'updated_ms', ARGV[3])
for i = 5, #ARGV do
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
return {'recorded', redis.call('HGET', KEYS[1], 'state')}
