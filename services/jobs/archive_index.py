"""The archive's two scripts on the finished index (job_store.FINISHED_INDEX), each one round trip
and atomic, and when an entry waiting for its record is due again (jobs/archive.py)."""

RECHECK_MIN = 1.0  # seconds before an entry waiting for its record is looked at again, at least

# KEYS[1] the finished index, then three keys per job (meta, record copy, delivery count);
# ARGV[1] seconds to keep a finished job, ARGV[2] now, then (job id, score read) per job.
# Returns how many entries it removed.
RELEASE = """
local keep, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for i = 3, #ARGV, 2 do
  local job_id, score = ARGV[i], tonumber(ARGV[i + 1])
  local current = redis.call('ZSCORE', KEYS[1], job_id)
  if current and tonumber(current) == score then
    redis.call('ZREM', KEYS[1], job_id)
    removed = removed + 1
    local first = 2 + (i - 3) / 2 * 3
    local raw = redis.call('GET', KEYS[first])
    local finished = false
    if raw then
      local ok, meta = pcall(cjson.decode, raw)
      finished = ok and type(meta) == 'table' and (meta.status == 'SUCCESS'
        or meta.status == 'FAILURE' or meta.status == 'REVOKED')
    end
    if finished then
      local left = math.ceil(keep - (now - score))
      for k = first, first + 2 do
        if left > 0 then redis.call('EXPIRE', KEYS[k], left) else redis.call('DEL', KEYS[k]) end
      end
    end
  end
end
return removed
"""

# KEYS[1] the finished index; ARGV (job id, score read, score when due again) per job: moves each
# entry that still has the score it read. Returns how many it moved.
POSTPONE = """
local moved = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    moved = moved + 1
  end
end
return moved
"""


def recheck_at(now: float, finished: float) -> float:
    """When an entry waiting for its record is due again (pure): after as long again as it has
    waited, at least RECHECK_MIN seconds - about ten looks within RECORD_WAIT."""
    return now + max(RECHECK_MIN, now - finished)
