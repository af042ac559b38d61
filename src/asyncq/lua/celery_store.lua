-- Write a task's entry in Celery's Redis result backend and PUBLISH it (what Celery's AsyncResult.get() waits
-- on), in one step, never replacing a SUCCESS (as Celery's backend): a re-run after a lost worker cannot turn a
-- reported success into something else.
-- ARGV[1] celery-task-meta-<id>  ARGV[2] the JSON document  ARGV[3] time to live in seconds (0: none)
-- Returns 1 written, 0 a SUCCESS was there already
local current = redis.call('GET', ARGV[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc.status == 'SUCCESS' then
    return 0
  end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', ARGV[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', ARGV[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
