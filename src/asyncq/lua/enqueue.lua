-- Enqueue a batch of jobs in one round trip, with arq's dedupe semantics.
-- A job whose payload key or result key exists is a duplicate and is left alone (arq: "job exists").
-- Jobs due now wake the workers of their queue at once (PUBLISH), instead of arq's 0.5 s poll.
--
-- ARGV[1] now (ms)   ARGV[2] job key prefix   ARGV[3] result key prefix   ARGV[4] wake channel prefix
-- ARGV[5] known-queues set
-- ARGV[6] the batch's metadata, msgpack: {lanes, queues, jobs} where lanes and queues are name lists and each
--         job is {id, lane index, queue index, score (run-at ms), payload ttl (ms), guard key, guard tick}
--         (guard: a periodic task's tick, enqueued once; '' and 0 for none), then optionally {ring key, flow
--         suffix} for a job in a sub-lane (a tenant's or a limited task's flow, see claim.lua): the flow joins
--         its lane's ring at the lowest pass there (a newcomer is served next, never owed a backlog of turns).
--         One packed argument instead of seven per job: packing arguments was the producer's main cost.
-- ARGV[7 ..] the payloads, in job order
-- Adopting Celery messages (the Celery consumer), the metadata has a fourth element {unacked, unacked_index,
-- delivery tags in job order}: each job is created only if its message is still in kombu's `unacked`, and the
-- message leaves `unacked` in the same step, so it is always in exactly one place. A duplicate (the message
-- was adopted before, e.g. redelivered) is acknowledged too.
-- Returns one status per job: 1 created, 0 duplicate, -1 guard said this tick was already enqueued,
-- -2 its Celery message was no longer in `unacked` (restored meanwhile; whoever pops it next runs it).
local job_prefix, result_prefix, wake_prefix, queues_set = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local meta = cmsgpack.unpack(ARGV[6])
local lanes, queues, jobs, adopt = meta[1], meta[2], meta[3], meta[4]
local out = {}
local wake = {}
for i, job in ipairs(jobs) do
  local id, lane, queue = job[1], lanes[job[2]], queues[job[3]]
  local score, ttl, guard_key, guard_tick = job[4], job[5], job[6], job[7]
  local status = 1
  if adopt and redis.call('HDEL', adopt[1], adopt[3][i]) == 0 then
    status = -2
  elseif adopt then
    redis.call('ZREM', adopt[2], adopt[3][i])
  end
  if status == 1 and guard_key ~= '' and tonumber(redis.call('GET', guard_key) or '0') >= guard_tick then
    status = -1
  end
  if status == 1 and redis.call('EXISTS', job_prefix .. id, result_prefix .. id) > 0 then
    status = 0
  end
  if status == 1 then
    if guard_key ~= '' then
      redis.call('SET', guard_key, string.format('%d', guard_tick))
    end
    redis.call('SET', job_prefix .. id, ARGV[6 + i], 'PX', string.format('%d', ttl))
    redis.call('ZADD', lane, string.format('%d', score), id)
    if job[8] and job[8] ~= '' then
      local first = redis.call('ZRANGE', job[8], 0, 0, 'WITHSCORES')
      redis.call('ZADD', job[8], 'NX', first[2] or 0, job[9])
    end
    if wake[queue] == nil or score < wake[queue] then
      wake[queue] = score
    end
  end
  out[#out + 1] = status
end
for queue, score in pairs(wake) do
  redis.call('SADD', queues_set, queue)
  redis.call(PUBLISH, wake_prefix .. queue, string.format('%d', score))
end
return out
