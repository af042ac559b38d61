-- Take Celery (kombu) messages off their lists and record them as delivered-but-unacknowledged, in one step.
-- kombu's own consumer BRPOPs and writes `unacked` in a second round trip, so a consumer killed in between
-- loses the message; here there is no moment when a popped message is in neither place.
-- The entries have kombu's exact form (HASH unacked: delivery tag -> JSON [message, exchange, routing key];
-- ZSET unacked_index: tag -> delivery time in seconds), so a stock Celery worker's restore_visible, or
-- asyncq's celery_restore, puts them back after the visibility timeout if this consumer dies before adopting
-- them as asyncq jobs (celery_adopt, which takes them out of `unacked` again).
-- A list element that is not a JSON object with properties.delivery_tag cannot be tracked in `unacked`: it
-- goes straight to asyncq's dead-letter store, with the reason, where `asyncq dlq` shows it.
--
-- ARGV[1] now (seconds)  ARGV[2] now (ms)  ARGV[3] most messages to take  ARGV[4] unacked  ARGV[5] unacked_index
-- ARGV[6] dlq index  ARGV[7] dlq payloads  ARGV[8] dlq meta
-- ARGV[9 ..] pairs: list key, queue name, in the order to pop (the queue's priority lists, highest first)
-- Returns a flat list of triples: delivery tag, message, queue; a dead-lettered element gives '', its dead-letter
-- id, queue.
local now, now_ms, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local unacked, unacked_index = ARGV[4], ARGV[5]
local dlq, dlq_payloads, dlq_meta = ARGV[6], ARGV[7], ARGV[8]
local out = {}
local taken = 0
local i = 9
while i < #ARGV and taken < want do
  local list, queue = ARGV[i], ARGV[i + 1]
  local raw = redis.call('RPOP', list)
  if not raw then
    i = i + 2
  else
    taken = taken + 1
    local ok, msg = pcall(cjson.decode, raw)
    local tag, reason = nil, nil
    if not ok or type(msg) ~= 'table' then
      reason = 'not a Celery message: the list element is not a JSON object'
    elseif type(msg.properties) ~= 'table' or type(msg.properties.delivery_tag) ~= 'string' then
      reason = 'not a Celery message: no properties.delivery_tag'
    else
      tag = msg.properties.delivery_tag
    end
    if tag then
      local info = msg.properties.delivery_info
      local exchange, routing_key = '', queue
      if type(info) == 'table' then
        if type(info.exchange) == 'string' then exchange = info.exchange end
        if type(info.routing_key) == 'string' then routing_key = info.routing_key end
      end
      -- the message text is kept byte for byte: a decode/encode round trip could change it
      redis.call('HSET', unacked, tag, '[' .. raw .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
      redis.call('ZADD', unacked_index, now, tag)
      out[#out + 1] = tag
      out[#out + 1] = raw
      out[#out + 1] = queue
    else
      local id = 'celery-malformed-' .. string.sub(redis.sha1hex(raw .. ARGV[2] .. taken), 1, 16)
      redis.call('HSET', dlq_payloads, id, raw)
      redis.call('HSET', dlq_meta, id, cjson.encode({
        job_id = id, ['function'] = '', queue = queue, lane = '', reason = reason,
        error = 'MalformedMessage: ' .. reason, traceback = '', tries = 0, failed_at = now_ms, worker = '',
        outcome = 'dead', kind = 'celery', celery_list = list}))
      redis.call('ZADD', dlq, now_ms, id)
      out[#out + 1] = ''
      out[#out + 1] = id
      out[#out + 1] = queue
    end
  end
end
return out
