-- A buyer's reservations of one product, for its per-buyer limit: put in
-- front of reserve.lua and settle.lua. The buyers hash maps a buyer id to
-- order=units@reserved_ms;… and the buyers-by-time zset holds each buyer at
-- their latest reservation, so that a buyer idle for the window is forgotten.

-- The buyer's entries: {order, units, at (unix ms), text}.
local function read_holding(buyers_key, buyer)
  local entries = {}
  local stored = redis.call('HGET', buyers_key, buyer) or ''
  for text, order, units, at in string.gmatch(stored, '(([^=;]+)=(%d+)@(%d+))') do
    entries[#entries + 1] = {order = order, units = tonumber(units), at = tonumber(at), text = text}
  end
  return entries
end

-- Stores the texts of the buyer's entries; a buyer with none is forgotten.
local function write_holding(buyers_key, by_time_key, buyer, texts)
  if #texts == 0 then
    redis.call('HDEL', buyers_key, buyer)
    redis.call('ZREM', by_time_key, buyer)
  else
    redis.call('HSET', buyers_key, buyer, table.concat(texts, ';'))
  end
end

