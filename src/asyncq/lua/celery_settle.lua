-- Settle Celery messages this consumer holds in kombu's `unacked` without adopting them: put one back on its
-- list (a task this worker does not know, for a Celery worker that does; or a hand-back at shutdown), or move
-- it to asyncq's dead-letter store (a message that cannot run: bad body, bad arguments, unknown for too long).
-- Each step takes the message out of `unacked` / `unacked_index` in the same script, so it is always in
-- exactly one place.
--
-- ARGV[1] now (ms)  ARGV[2] unacked  ARGV[3] unacked_index  ARGV[4] dlq index  ARGV[5] dlq payloads
-- ARGV[6] dlq meta
-- ARGV[7 ..] groups of six: action ('back' = LPUSH, the far end, popped last; 'front' = RPUSH, popped next;
--            'dead'), delivery tag, the message as claimed (byte for byte), list key (for back/front),
--            dead-letter id and meta JSON (for dead)
-- Returns one status per group: 1 done, 0 the tag was no longer in `unacked` (restored meanwhile)
local now = tonumber(ARGV[1])
local unacked, unacked_index = ARGV[2], ARGV[3]
local dlq, dlq_payloads, dlq_meta = ARGV[4], ARGV[5], ARGV[6]
local out = {}
for i = 7, #ARGV, 6 do
  local action, tag, message = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local list, id, meta = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  if redis.call('HDEL', unacked, tag) == 0 then
    out[#out + 1] = 0
  else
    redis.call('ZREM', unacked_index, tag)
    if action == 'dead' then
      redis.call('HSET', dlq_payloads, id, message)
      redis.call('HSET', dlq_meta, id, meta)
      redis.call('ZADD', dlq, now, id)
    elseif action == 'front' then
      redis.call('RPUSH', list, message)
    else
      redis.call('LPUSH', list, message)
    end
    out[#out + 1] = 1
  end
end
return out
