-- Removes a member of a sorted set only if its score is at most ARGV[2]: an
-- entry re-added since (with a later score) stays.
-- KEYS[1] sorted set. ARGV[1] member, ARGV[2] score.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
