-- Moves a shipment one step forward, if that step is possible from where it
-- is. Every key belongs to the shipment's hash slot.
--
-- KEYS[1] shipment hash   KEYS[2] the shipment's claimed couriers (set)
-- ARGV[1] step: assign | expire | withdraw | release | flag_overdue | give_up
--   | pick_up | deliver | fail
-- ARGV[2] courier id (assign, release and the courier's own steps; ''
--   otherwise)
-- ARGV[3] now (unix ms)   ARGV[4] keep a finished shipment this long (ms)
-- ARGV[5], ARGV[6] the step's details:
--   assign: distance in meters, the courier's partner ('' for none)
--   expire, give_up, fail: reason
--   release: the new assign-by (unix ms)   flag_overdue: overdue since (unix ms)
--   deliver: recipient name, proof reference
-- ARGV[7], ARGV[8] deliver: the operator who confirmed it without the
--   buyer's code and why ('' for a courier's delivery with the code)
--
-- A release keeps the assignment it ends as 'release:<n>' = '<courier id>
-- <assigned at> <distance> <released at> <partner>' (n counts from 1,
-- 'releases' holds the count; the partner is left out when there is none); a
-- courier released once is never assigned the shipment again.
--
-- Returns {outcome, state, courier id}. Outcome is 'changed'; 'unchanged'
-- when the shipment already took this very step (nothing changes);
-- 'forbidden' when a courier's step names another courier; 'refused' when the
-- step is impossible from the current state; 'missing' for no such shipment.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'missing', '', ''}
end
local courier = redis.call('HGET', KEYS[1], 'courier_id') or ''
local step, who, now = ARGV[1], ARGV[2], ARGV[3]

local function reply(outcome)
  return {outcome, redis.call('HGET', KEYS[1], 'state'), redis.call('HGET', KEYS[1], 'courier_id') or ''}
end

local function move(to, ...)
  redis.call('HSET', KEYS[1], 'state', to, 'updated_at_ms', now, ...)
  if to == 'delivered' or to == 'failed' or to == 'withdrawn' then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
  return reply('changed')
end

-- Fails the shipment for `kind` with ARGV[5] as the reason when `possible`;
-- 'unchanged' when it already failed for that kind.
local function fail_for(kind, possible)
  if possible then
    return move('failed', 'failure_kind', kind, 'failure_reason', ARGV[5], 'failed_at_ms', now)
  end
  if state == 'failed' and redis.call('HGET', KEYS[1], 'failure_kind') == kind then
    return reply('unchanged')
  end
  return reply('refused')
end

-- Whether the shipment was taken back from `who` before.
local function passed_over(who)
  local count = tonumber(redis.call('HGET', KEYS[1], 'releases') or '0')
  for n = 1, count do
    local record = redis.call('HGET', KEYS[1], 'release:' .. n) or ''
    if string.match(record, '^[^ ]+') == who then
      return true
    end
  end
  return false
end

if step == 'assign' then
  if state == 'awaiting' and not passed_over(who) then
    if ARGV[6] ~= '' then
      redis.call('HSET', KEYS[1], 'partner_id', ARGV[6])
    end
    return move('assigned', 'courier_id', who, 'assigned_at_ms', now, 'distance_m', ARGV[5])
  end
  if state == 'assigned' and courier == who then
    return reply('unchanged')
  end
  return reply('refused')
end

if step == 'expire' then
  return fail_for('no_courier', state == 'awaiting')
end

if step == 'withdraw' then
  if state == 'awaiting' or state == 'assigned' then
    return move('withdrawn', 'withdrawn_at_ms', now)
  end
  if state == 'withdrawn' then
    return reply('unchanged')
  end
  return reply('refused')
end

if step == 'release' then
  if state == 'assigned' and courier == who then
    local n = redis.call('HINCRBY', KEYS[1], 'releases', 1)
    local fields = redis.call('HMGET', KEYS[1], 'assigned_at_ms', 'distance_m', 'partner_id')
    local record = who .. ' ' .. (fields[1] or '0') .. ' ' .. (fields[2] or '0') .. ' ' .. now
    if fields[3] then
      record = record .. ' ' .. fields[3]
    end
    redis.call('HSET', KEYS[1], 'release:' .. n, record)
    redis.call('HDEL', KEYS[1], 'courier_id', 'assigned_at_ms', 'distance_m', 'partner_id')
    return move('awaiting', 'assign_by_ms', ARGV[5])
  end
  if state == 'awaiting' and passed_over(who) then
    return reply('unchanged')
  end
  return reply('refused')
end

if step == 'flag_overdue' then
  if state == 'picked_up' and not redis.call('HGET', KEYS[1], 'overdue_since_ms') then
    redis.call('HSET', KEYS[1], 'overdue_since_ms', ARGV[5], 'overdue_at_ms', now, 'updated_at_ms', now)
    return reply('changed')
  end
  if redis.call('HGET', KEYS[1], 'overdue_since_ms') then
    return reply('unchanged')
  end
  return reply('refused')
end

if step == 'give_up' then
  return fail_for('delivery_failed', state == 'picked_up')
end

-- The courier's own steps.
if courier ~= who then
  return reply('forbidden')
end
if step == 'pick_up' then
  if state == 'assigned' then
    return move('picked_up', 'picked_up_at_ms', now)
  end
  if state == 'picked_up' then
    return reply('unchanged')
  end
  return reply('refused')
end
if step == 'deliver' then
  if state == 'picked_up' then
    return move('delivered', 'delivered_at_ms', now, 'recipient_name', ARGV[5],
      'proof_reference', ARGV[6], 'overridden_by', ARGV[7] or '', 'override_reason', ARGV[8] or '')
  end
  if state == 'delivered' then
    return reply('unchanged')
  end
  return reply('refused')
end
if step == 'fail' then
  return fail_for('delivery_failed', state == 'assigned' or state == 'picked_up')
end
return redis.error_reply('unknown step ' .. step)
