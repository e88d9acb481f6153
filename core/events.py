"""Job events: one Redis stream per job, ``{prefix}:events:{id}``, read by
``GET /jobs/{id}/events``.

Each entry is a snapshot of the job's public state: ``status`` (a :class:`JobStatus` value) and
``progress`` (:class:`Progress` JSON). Entries are appended in the same Redis call that changes
the job hash (the job store's transition script and :data:`PROGRESS_LUA`), so a reader never sees
an event the hash does not reflect, and an event stream lives exactly as long as its job record
(the stream gets the hash's TTL at every append). Stream ids (``<ms>-<n>``) are the SSE event ids,
which is what makes ``Last-Event-ID`` resume work on any gateway replica. No torch, no web
framework here.
"""

from __future__ import annotations

import re
from typing import Any

from core.contract import JobStatus, Progress
from core.settings import Settings

# Appended to a Lua script that has already written the job hash KEYS[1]; KEYS[2] = the stream,
# ARGV_MAXLEN names the ARGV slot holding MMD_EVENTS_MAX_LEN. Uses the hash's current status and
# progress (so an event is exactly what the hash says) and gives the stream the hash's TTL.
_APPEND_LUA = """
local function append_event(maxlen)
  local st = redis.call('HGET', KEYS[1], 'status')
  if not st then return end
  local pr = redis.call('HGET', KEYS[1], 'progress') or '{}'
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'status', st, 'progress', pr)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
"""

# KEYS[1] = job hash, KEYS[2] = its event stream; ARGV[1] = progress JSON, ARGV[2] = max length.
# Writes the progress, appends the event and returns the cancel flag: one round trip.
PROGRESS_LUA = _APPEND_LUA + """
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
append_event(ARGV[2])
return redis.call('HGET', KEYS[1], 'cancel')
"""

# The Lua fragment the job store's transition script runs after a successful status change.
APPEND_AFTER_TRANSITION_LUA = _APPEND_LUA

_EVENT_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


def events_key(settings: Settings, job_id: str) -> str:
    """The Redis stream of job ``job_id``'s events."""
    return settings.key("events", job_id)


def parse_event_id(value: str | None) -> str | None:
    """A ``Last-Event-ID`` header as a stream id, or None when absent or not a stream id (the
    stream is then read from its start)."""
    value = (value or "").strip()
    return value if _EVENT_ID_RE.match(value) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entry(fields: dict[Any, Any]) -> tuple[JobStatus, Progress]:
    """A stream entry's ``(status, progress)``."""
    h = {_text(k): _text(v) for k, v in fields.items()}
    return JobStatus(h["status"]), Progress.model_validate_json(h.get("progress") or "{}")


def event_data(status: JobStatus, progress: Progress, queue_position: int | None) -> dict[str, Any]:
    """The JSON body of a ``progress`` event."""
    return {"status": status.value, **progress.model_dump(), "queue_position": queue_position}


def format_sse(event: str, data: str, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (``data`` is one line of JSON)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()
