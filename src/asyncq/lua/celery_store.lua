-- Write a task's entry in Celery's Redis result backend and PUBLISH it (what Celery's AsyncResult.get() waits
-- on), in one step, never replacing a SUCCESS (as Celery's backend): a re-run after a lost worker cannot turn a
-- reported success into something else.
-- KEYS[1] celery-task-meta-<id> (declared: on Redis Cluster it routes the call to the key's node)
-- ARGV[1] the JSON document  ARGV[2] time to live in seconds (0: none)
-- Returns 1 written, 0 a SUCCESS was there already
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc.status == 'SUCCESS' then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
