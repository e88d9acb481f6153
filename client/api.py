"""A small Python client for mmd-serve (httpx only; no torch, nothing else from this repo).

    from client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as mmd:   # api_key: None in open mode
        job = mmd.generate("joint", seed=1, sampler={"steps": 10}, prompt="red")
        doc = job.wait(on_progress=lambda e: print(e.status, e.fraction))
        job.download("out.mp4")

``generate("video-to-audio", "clip.mp4")`` and ``generate("audio-to-video", "tone.wav")`` upload a
file; the keyword arguments are the API's parameters (``seed``, ``preset``, ``num_samples``,
``sampler={...}``, ``super_resolution={...}``, ``guidance_scale``, ``prompt``, ...). ``wait``
follows the job's Server-Sent Events (``GET /jobs/{id}/events``), resuming with
``Last-Event-ID`` when the connection drops, and raises :class:`JobFailed` unless the job
succeeded. Every HTTP error raises :class:`ServiceError` with the service's own message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

MODES = ("joint", "video-to-audio", "audio-to-video")
TERMINAL = ("succeeded", "failed", "canceled")


class ServiceError(RuntimeError):
    """The service answered with an HTTP error; ``message`` is what it said."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.code = status, message, code


class JobFailed(RuntimeError):
    """The job ended ``failed`` or ``canceled``; ``job`` is its whole document."""

    def __init__(self, job: dict[str, Any]) -> None:
        err = job.get("error") or {}
        detail = f"{err.get('code')}: {err.get('message')}" if err else job["status"]
        super().__init__(f"job {job['id']} {job['status']}: {detail}")
        self.job = job


@dataclass(frozen=True)
class Event:
    """One progress event: ``status``, ``stage``, ``step``/``total``, ``fraction`` (0..1) and,
    while queued, ``queue_position`` (0 = next)."""

    status: str
    stage: str | None = None
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    queue_position: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SSEMessage:
    """One Server-Sent Event as sent: ``event`` name, ``data`` text, ``id`` (None if absent)."""

    event: str
    data: str
    id: str | None = None


def parse_sse(lines: Iterator[str]) -> Iterator[SSEMessage]:
    """Server-Sent Events from the lines of a ``text/event-stream`` (comments skipped)."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield SSEMessage(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value


def _error(resp: httpx.Response) -> ServiceError:
    """The service's message, whichever error body shape it uses."""
    try:
        body = resp.json()
    except ValueError:
        return ServiceError(resp.status_code, resp.text.strip() or resp.reason_phrase)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            where = f" ({err['field']})" if err.get("field") else ""
            return ServiceError(resp.status_code, f"{err['message']}{where}", err.get("code"))
        detail = body.get("detail")
        if isinstance(detail, str):
            return ServiceError(resp.status_code, detail)
        if isinstance(detail, list):
            parts = [".".join(str(p) for p in d.get("loc", [])) + ": " + str(d.get("msg"))
                     for d in detail if isinstance(d, dict)]
            return ServiceError(resp.status_code, "; ".join(parts), "invalid_parameters")
    return ServiceError(resp.status_code, json.dumps(body))


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.is_error:
        resp.read()
        raise _error(resp)
    return resp


class Client:
    """A connection to one mmd-serve gateway. ``api_key`` is sent as a bearer header (None in
    open mode); it never goes into a URL."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                 transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def generate(self, mode: str = "joint", file: str | os.PathLike[str] | None = None, *,
                 prompt: str | None = None, prompt_scale: float | None = None,
                 **params: Any) -> Job:
        """Submit a job; returns its handle. ``file`` is the upload of the conditional modes;
        ``prompt`` steers it with the model's aligner (``prompt_scale``: its strength, None = the
        aligner's default); ``params`` are the API's other parameters (None values are left
        out)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        params = {**params, "prompt": prompt, "prompt_scale": prompt_scale}
        body = {k: v for k, v in params.items() if v is not None}
        if mode == "joint":
            if file is not None:
                raise ValueError("joint generation takes no file")
            resp = self.http.post("/generate", json={"mode": "joint", **body})
        else:
            if file is None:
                raise ValueError(f"{mode} needs a file to condition on")
            path = Path(file)
            with open(path, "rb") as fh:
                resp = self.http.post(f"/{mode}", files={"file": (path.name, fh)},
                                      data={"params": json.dumps(body)})
        return Job(self, str(_check(resp).json()["id"]))

    def job(self, job_id: str) -> Job:
        """The handle of an existing job."""
        return Job(self, job_id)


@dataclass
class Job:
    """A submitted job: its document, its events, waiting and downloading."""

    client: Client
    id: str
    last_event_id: str | None = field(default=None, repr=False)

    def get(self) -> dict[str, Any]:
        """``GET /jobs/{id}``."""
        return dict(_check(self.client.http.get(f"/jobs/{self.id}")).json())

    def cancel(self) -> dict[str, Any]:
        return dict(_check(self.client.http.post(f"/jobs/{self.id}/cancel")).json())

    def events(self, *, reconnects: int = 20) -> Iterator[SSEMessage]:
        """The job's events until ``done`` (whose data is the whole job document); a dropped
        connection is resumed after the last event id, up to ``reconnects`` times."""
        tries = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                with self.client.http.stream("GET", f"/jobs/{self.id}/events", headers=headers,
                                             timeout=httpx.Timeout(60.0, read=120.0)) as resp:
                    _check(resp)
                    for msg in parse_sse(resp.iter_lines()):
                        if msg.id:
                            self.last_event_id = msg.id
                        yield msg
                        if msg.event in ("done", "error"):
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            tries += 1
            if tries > reconnects:
                raise ServiceError(0, f"the event stream of job {self.id} kept dropping "
                                      f"({reconnects} reconnects); GET /jobs/{self.id} for its "
                                      "state")
            time.sleep(min(5.0, 0.5 * tries))

    def wait(self, on_progress: Callable[[Event], None] | None = None) -> dict[str, Any]:
        """Follow the events until the job ends; returns its document (result with links).
        Raises :class:`JobFailed` when it failed or was canceled."""
        for msg in self.events():
            data = json.loads(msg.data)
            if msg.event == "progress" and on_progress is not None:
                on_progress(Event.from_json(data))
            elif msg.event == "done":
                if data["status"] != "succeeded":
                    raise JobFailed(data)
                return dict(data)
            elif msg.event == "error":
                raise ServiceError(404, str(data.get("message")), data.get("code"))
        raise ServiceError(0, f"the event stream of job {self.id} ended without a done event")

    def download(self, path: str | os.PathLike[str], sample: int = 0) -> Path:
        """Stream sample ``sample``'s MP4 to ``path`` (written whole or not at all)."""
        out = Path(path)
        tmp = out.with_name(out.name + ".part")
        with self.client.http.stream("GET", f"/jobs/{self.id}/result",
                                     params={"sample": sample}, follow_redirects=True) as resp:
            _check(resp)
            with open(tmp, "wb") as fh:
                fh.writelines(resp.iter_bytes(1 << 20))
        tmp.replace(out)
        return out
