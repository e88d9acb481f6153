"""Per-key rate limit and quota in Redis, so that they hold across gateway replicas.

One Lua script admits a submission atomically:

- submissions per minute: a fixed one-minute window, ``{prefix}:rate:{owner}:{minute}``
  (INCR + EXPIRE); over ``MMD_RATE_LIMIT_PER_MINUTE`` -> 429, ``Retry-After`` = seconds left in
  the window;
- active jobs (queued + running): a sorted set ``{prefix}:active:{owner}`` of job ids (score =
  admission time). Before counting, the script drops ids whose job record is terminal
  (succeeded/failed/canceled) or gone (expired, or a submission that was admitted and then
  rejected and never stored: after a grace of ``RESERVATION_GRACE_S``). Over
  ``MMD_MAX_ACTIVE_JOBS_PER_KEY`` -> 429 with ``Retry-After: ACTIVE_RETRY_AFTER_S``.

``POST /uploads`` has its own per-minute window, ``{prefix}:uprate:{owner}:{minute}``, capped
by ``MMD_UPLOAD_RATE_LIMIT_PER_MINUTE`` (same script, no active-job part: an upload is not a job).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from core.settings import Settings
from service.errors import ApiError

RESERVATION_GRACE_S = 60
ACTIVE_RETRY_AFTER_S = 5

# KEYS[1] rate key, KEYS[2] active zset; ARGV: rate limit, active limit, now, job id,
# job key prefix ("{prefix}:job:"), grace seconds. Returns {code, retry_after}:
# 0 admitted, 1 rate limited, 2 too many active jobs.
_ADMIT_LUA = """
local rate_limit = tonumber(ARGV[1])
local active_limit = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if rate_limit > 0 then
  local n = tonumber(redis.call('GET', KEYS[1]) or '0')
  if n >= rate_limit then
    local ttl = redis.call('TTL', KEYS[1])
    if ttl < 1 then ttl = 60 end
    return {1, ttl}
  end
end
if active_limit > 0 then
  local ids = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #ids, 2 do
    local status = redis.call('HGET', ARGV[5] .. ids[i], 'status')
    if (not status and tonumber(ids[i + 1]) < now - tonumber(ARGV[6]))
       or status == 'succeeded' or status == 'failed' or status == 'canceled' then
      redis.call('ZREM', KEYS[2], ids[i])
    end
  end
  if redis.call('ZCARD', KEYS[2]) >= active_limit then
    return {2, 0}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('EXPIRE', KEYS[2], 86400 * 30)
end
if rate_limit > 0 then
  if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], 60) end
end
return {0, 0}
"""


@dataclass(frozen=True)
class Rejection:
    """Why a submission was refused and when to retry (seconds)."""

    message: str
    retry_after_s: int
    code: str = "rate_limited"  # or quota_exceeded (too many active jobs)

    def http(self) -> ApiError:
        return ApiError(429, self.message, code=self.code,
                        headers={"Retry-After": str(self.retry_after_s)})


class Limiter:
    """Admits submissions per key; see the module docstring."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._admit = redis.register_script(_ADMIT_LUA)

    def _keys(self, owner: str, now: float) -> list[str]:
        minute = str(int(now // 60))
        return [self.settings.key("rate", owner, minute), self.settings.key("active", owner)]

    def admit(self, owner: str, job_id: str, *, now: float | None = None) -> Rejection | None:
        """Count one submission of ``owner`` and reserve an active slot for ``job_id``; returns
        None when admitted, else the :class:`Rejection` (nothing counted)."""
        s = self.settings
        if s.rate_limit_per_minute == 0 and s.max_active_jobs_per_key == 0:
            return None
        now = time.time() if now is None else now
        code, retry = self._admit(
            keys=self._keys(owner, now),
            args=[s.rate_limit_per_minute, s.max_active_jobs_per_key, now, job_id,
                  s.key("job", ""), RESERVATION_GRACE_S])
        if int(code) == 1:
            return Rejection(f"rate limit: at most {s.rate_limit_per_minute} submissions per "
                             f"minute per API key (MMD_RATE_LIMIT_PER_MINUTE); retry in "
                             f"{int(retry)} s", int(retry))
        if int(code) == 2:
            return Rejection(f"quota: at most {s.max_active_jobs_per_key} queued or running jobs "
                             "per API key (MMD_MAX_ACTIVE_JOBS_PER_KEY); wait for one to finish "
                             "or cancel one", ACTIVE_RETRY_AFTER_S, code="quota_exceeded")
        return None

    def admit_upload(self, owner: str, *, now: float | None = None) -> Rejection | None:
        """Count one ``POST /uploads`` of ``owner``; None when admitted, else the
        :class:`Rejection` (nothing counted)."""
        limit = self.settings.upload_rate_limit_per_minute
        if limit == 0:
            return None
        now = time.time() if now is None else now
        rate_key = self.settings.key("uprate", owner, str(int(now // 60)))
        code, retry = self._admit(keys=[rate_key, rate_key], args=[limit, 0, now, "", "", 0])
        if int(code) == 1:
            return Rejection(f"rate limit: at most {limit} uploads per minute per API key "
                             f"(MMD_UPLOAD_RATE_LIMIT_PER_MINUTE); retry in {int(retry)} s",
                             int(retry))
        return None

    def release(self, owner: str, job_id: str) -> None:
        """Give back the active slot of a submission that was admitted but not enqueued."""
        self.redis.zrem(self.settings.key("active", owner), job_id)
