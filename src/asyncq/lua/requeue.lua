-- Put a claimed job back in its lane: a retry after backoff, a hand-back at shutdown, or a task name this
-- worker does not know yet (rolling deploy). Only the lease holder may do it.
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] retry prefix  ARGV[4] running prefix  ARGV[5] wake prefix
-- ARGV[6] id  ARGV[7] token  ARGV[8] lane  ARGV[9] queue  ARGV[10] new score (run-at ms)
-- ARGV[11] 1 to give the try back (hand-back and unknown task are not the job's fault), else 0
-- Returns 1 requeued, 0 lease lost
local now = tonumber(ARGV[1])
local ip_prefix, retry_prefix, running_prefix, wake_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local id, token, lane, queue, score = ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
if redis.call('GET', ip_prefix .. id) ~= token then
  return 0
end
redis.call('DEL', ip_prefix .. id)
redis.call('ZADD', lane, score, id)
redis.call('ZREM', running_prefix .. queue, id)
if ARGV[11] == '1' and redis.call('DECR', retry_prefix .. id) <= 0 then
  redis.call('DEL', retry_prefix .. id)
end
redis.call('PUBLISH', wake_prefix .. queue, score)
return 1
