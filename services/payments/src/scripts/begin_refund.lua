-- Sets money aside for a refund of a captured payment, one refund at a time,
-- never more than was captured and not yet refunded.
--
-- KEYS[1] payment hash
-- ARGV[1] refund key (unique per refund of the order)
-- ARGV[2] amount in fen, 0 for everything not yet refunded
-- ARGV[3] reason   ARGV[4] now (unix ms)
--
-- A refund record is STATE|amount|total refunded after it|reason, STATE being
-- pending or done. Returns one of (only 'started' changes anything):
--   {'started', record}  {'existing', record}  (this key's refund)
--   {'busy', other key}                        (another refund is pending)
--   {'state', state}                           (not a captured payment)
--   {'nothing', captured, refunded}            (all of it is refunded)
--   {'exceeds', captured, refunded}            (more than is left)
local existing = redis.call('HGET', KEYS[1], 'refund:' .. ARGV[1])
if existing then
  return {'existing', existing}
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'captured' and state ~= 'partially_refunded' and state ~= 'refunded' then
  return {'state', state or ''}
end
local pending = redis.call('HGET', KEYS[1], 'refund_pending')
if pending and pending ~= '' then
  return {'busy', pending}
end
local captured = tonumber(redis.call('HGET', KEYS[1], 'captured'))
local refunded = tonumber(redis.call('HGET', KEYS[1], 'refunded'))
local remaining = captured - refunded
local amount = tonumber(ARGV[2])
if amount == 0 then
  amount = remaining
end
if amount <= 0 then
  return {'nothing', tostring(captured), tostring(refunded)}
end
if amount > remaining then
  return {'exceeds', tostring(captured), tostring(refunded)}
end
local record = string.format('pending|%d|%d|%s', amount, refunded + amount, ARGV[3])
redis.call('HSET', KEYS[1],
  'refund:' .. ARGV[1], record,
  'refund_pending', ARGV[1],
  'updated_ms', ARGV[4])
return {'started', record}
