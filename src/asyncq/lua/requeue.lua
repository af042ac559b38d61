-- Put a claimed job back in its lane: a retry after backoff, a hand-back at shutdown, or a task name this
-- worker does not know yet (rolling deploy). Only the owner may do it (asyncq_owns, _owner.lua).
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] retry prefix  ARGV[4] running prefix  ARGV[5] wake prefix
-- ARGV[6] id  ARGV[7] token  ARGV[8] lane  ARGV[9] queue  ARGV[10] new score (run-at ms)
-- ARGV[11] 1 to give the try back (hand-back and unknown task are not the job's fault), else 0
-- ARGV[12] claimed prefix  ARGV[13] generation
-- Returns 1 requeued, 0 lost to another claim
local now = tonumber(ARGV[1])
local ip_prefix, retry_prefix, running_prefix, wake_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local id, token, lane, queue, score = ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local claimed_prefix, gen = ARGV[12], tonumber(ARGV[13])
if not asyncq_owns(ip_prefix .. id, token, retry_prefix .. id, gen, claimed_prefix .. queue, id) then
  return 0
end
redis.call('DEL', ip_prefix .. id)
redis.call('ZADD', lane, score, id)
redis.pcall('ZREM', running_prefix .. queue, id)
redis.pcall('HDEL', claimed_prefix .. queue, id)
if ARGV[11] == '1' then
  local left = redis.pcall('DECR', retry_prefix .. id)
  if type(left) ~= 'number' or left <= 0 then
    redis.call('DEL', retry_prefix .. id)
  end
end
redis.call(PUBLISH, wake_prefix .. queue, score)
return 1
