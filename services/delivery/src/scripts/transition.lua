-- Moves a shipment one step forward, if that step is possible from where it
-- is. Every key belongs to the shipment's hash slot.
--
-- KEYS[1] shipment hash   KEYS[2] the shipment's claimed couriers (set)
-- ARGV[1] step: assign | expire | withdraw | pick_up | deliver | fail
-- ARGV[2] courier id (assign and the courier's own steps; '' otherwise)
-- ARGV[3] now (unix ms)   ARGV[4] keep a finished shipment this long (ms)
-- ARGV[5], ARGV[6] the step's details:
--   assign: distance in meters   expire, fail: reason
--   deliver: recipient name, proof reference
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

if step == 'assign' then
  if state == 'awaiting' then
    return move('assigned', 'courier_id', who, 'assigned_at_ms', now, 'distance_m', ARGV[5])
  end
  if state == 'assigned' and courier == who then
    return reply('unchanged')
  end
  return reply('refused')
end

if step == 'expire' then
  if state == 'awaiting' then
    return move('failed', 'failure_kind', 'no_courier', 'failure_reason', ARGV[5], 'failed_at_ms', now)
  end
  if state == 'failed' and redis.call('HGET', KEYS[1], 'failure_kind') == 'no_courier' then
    return reply('unchanged')
  end
  return reply('refused')
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
    return move('delivered', 'delivered_at_ms', now, 'recipient_name', ARGV[5], 'proof_reference', ARGV[6])
  end
  if state == 'delivered' then
    return reply('unchanged')
  end
  return reply('refused')
end
if step == 'fail' then
  if state == 'assigned' or state == 'picked_up' then
    return move('failed', 'failure_kind', 'delivery_failed', 'failure_reason', ARGV[5], 'failed_at_ms', now)
  end
  if state == 'failed' and redis.call('HGET', KEYS[1], 'failure_kind') == 'delivery_failed' then
    return reply('unchanged')
  end
  return reply('refused')
end
return redis.error_reply('unknown step ' .. step)
