-- Starts settling an authorization: capturing it (the order was delivered)
-- or voiding it (the order was cancelled). Only an authorized payment starts
-- either, so an order is captured or voided, once.
--
-- KEYS[1] payment hash
-- ARGV[1] 'capture' | 'void'   ARGV[2] now (unix ms)
-- capture: ARGV[3] amount   ARGV[4] commission   ARGV[5] the planned split
--          (encoded PaymentCaptured)   ARGV[6..] each seller's payout
--
-- Returns {'started', state}, {'existing', state} when the payment is not
-- authorized, or {'refused', reason} when the split does not add up; only
-- 'started' changes anything.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'authorized' then
  return {'existing', state or ''}
end
if ARGV[1] == 'void' then
  redis.call('HSET', KEYS[1], 'state', 'voiding', 'updated_ms', ARGV[2])
  return {'started', 'voiding'}
end
local authorized = tonumber(redis.call('HGET', KEYS[1], 'authorized'))
local amount = tonumber(ARGV[3])
if amount <= 0 or amount > authorized then
  return {'refused', 'a capture of ' .. ARGV[3] .. ' fen does not fit the authorized '
    .. authorized .. ' fen'}
end
local split = tonumber(ARGV[4])
for i = 6, #ARGV do
  split = split + tonumber(ARGV[i])
end
if split ~= amount then
  return {'refused', 'payouts plus commission make ' .. split .. ' fen, not the captured '
    .. ARGV[3] .. ' fen'}
end
redis.call('HSET', KEYS[1], 'state', 'capturing', 'capture', ARGV[5], 'updated_ms', ARGV[2])
return {'started', 'capturing'}
