-- Ends a pending refund: records it (the provider paid it back) or drops it
-- (the provider refused), releasing the money set aside either way.
--
-- KEYS[1] payment hash   KEYS[2] ledger entries (list)
-- ARGV[1] refund key   ARGV[2] 'record' | 'abort'   ARGV[3] now (unix ms)
-- record: ARGV[4] the event to publish (encoded envelope)   ARGV[5] ledger entry
--
-- Returns {'recorded', state}, {'aborted', state}, or {'existing', record}
-- when the refund is not pending (nothing changes).
local field = 'refund:' .. ARGV[1]
local record = redis.call('HGET', KEYS[1], field)
if not record or string.sub(record, 1, 8) ~= 'pending|' then
  return {'existing', record or ''}
end
redis.call('HSET', KEYS[1], 'refund_pending', '', 'updated_ms', ARGV[3])
if ARGV[2] == 'abort' then
  redis.call('HDEL', KEYS[1], field)
  return {'aborted', redis.call('HGET', KEYS[1], 'state')}
end
local amount, total = string.match(record, '^pending|(%d+)|(%d+)|')
local captured = tonumber(redis.call('HGET', KEYS[1], 'captured'))
local refunded = tonumber(redis.call('HGET', KEYS[1], 'refunded'))
if refunded + tonumber(amount) ~= tonumber(total) or tonumber(total) > captured then
  return redis.error_reply('refund record ' .. record .. ' does not fit the ledger')
end
local state = 'partially_refunded'
if tonumber(total) == captured then
  state = 'refunded'
end
redis.call('HSET', KEYS[1],
  field, 'done|' .. string.sub(record, 9),
  'state', state,
  'refunded', total,
  'event:refund:' .. ARGV[1], ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
return {'recorded', state}
