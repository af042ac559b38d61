-- Put back Celery messages that a consumer took (they sit in kombu's `unacked`) but never acknowledged within
-- the visibility timeout: kombu's restore_visible, done by asyncq too so that nothing is stranded once no
-- Celery worker runs any more. Only messages routed to the given queues are touched, with the timeout the
-- Celery app configures (the one its own workers use), and nothing happens while a Celery worker holds
-- `unacked_mutex` (it is restoring itself). Messages go to the front of their priority list (RPUSH: popped
-- next), as kombu does.
--
-- ARGV[1] cutoff (seconds: delivered before this)  ARGV[2] unacked  ARGV[3] unacked_index  ARGV[4] mutex
-- ARGV[5] kombu's priority separator  ARGV[6] most messages per call  ARGV[7 ..] queue names
-- Returns the number of messages restored, or -1 when a Celery worker holds the mutex.
local cutoff, unacked, unacked_index, mutex, sep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', mutex) == 1 then
  return -1
end
local ours = {}
for i = 7, #ARGV do ours[ARGV[i]] = true end
local restored = 0
local tags = redis.call('ZRANGEBYSCORE', unacked_index, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[6]))
for _, tag in ipairs(tags) do
  local entry = redis.call('HGET', unacked, tag)
  if not entry then
    redis.call('ZREM', unacked_index, tag)
  else
    local ok, triple = pcall(cjson.decode, entry)
    if ok and type(triple) == 'table' and type(triple[1]) == 'table' and ours[triple[3]] then
      local msg = triple[1]
      -- celery_claim kept the message text as it was: take it back unchanged when the entry is its own form
      local suffix = ',' .. cjson.encode(triple[2]) .. ',' .. cjson.encode(triple[3]) .. ']'
      local text
      if string.sub(entry, -#suffix) == suffix then
        text = string.sub(entry, 2, #entry - #suffix)
      else
        if type(msg.headers) == 'table' then msg.headers.redelivered = true end
        text = cjson.encode(msg)
      end
      local p = 0
      if type(msg.properties) == 'table' then p = tonumber(msg.properties.priority) or 0 end
      local step = 0
      if p >= 9 then step = 9 elseif p >= 6 then step = 6 elseif p >= 3 then step = 3 end
      local list = triple[3]
      if step > 0 then list = list .. sep .. step end
      redis.call('RPUSH', list, text)
      redis.call('HDEL', unacked, tag)
      redis.call('ZREM', unacked_index, tag)
      restored = restored + 1
    end
  end
end
return restored
