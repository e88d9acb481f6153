"""The mmd-serve Python client (httpx only): ``Client(url, api_key).generate(...)`` returns a
:class:`Job` with ``.wait()`` and ``.download(path)``. See :mod:`client.api`."""

from client.api import Client, Event, Job, JobFailed, ServiceError

__all__ = ["Client", "Event", "Job", "JobFailed", "ServiceError"]
