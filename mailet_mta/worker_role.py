"""What a worker process learns from its supervisor, and what it tells it back.

The supervisor (:mod:`mailet_mta.supervisor`) starts each worker as ``mailet-mta
serve`` with the same arguments and one environment variable, ``MAILET_MTA_WORKER``: a
JSON object with the worker's index, the inherited bound sockets by listener key
(``smtp:submission`` → descriptor; the worker listens beside each, see
:mod:`mailet_mta.shared_sockets`) and the descriptor of a pipe on which the worker
reports, once every listener listens, one JSON line: its pid, node name and listeners.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .api import ConfigurationError

ENVIRONMENT = "MAILET_MTA_WORKER"


@dataclass
class WorkerRole:
    """One worker's place among its supervisor's workers."""

    index: int
    count: int
    supervisor_pid: int
    ready_fd: int
    sockets: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ=None) -> WorkerRole | None:
        """The role given by the supervisor, or None for a process started by hand."""
        text = (environ if environ is not None else os.environ).get(ENVIRONMENT)
        if not text:
            return None
        data = json.loads(text)
        return cls(index=int(data["index"]), count=int(data["count"]),
                   supervisor_pid=int(data["supervisor"]), ready_fd=int(data["ready_fd"]),
                   sockets={str(k): int(v) for k, v in data["sockets"].items()})

    def to_environment(self) -> str:
        return json.dumps({"index": self.index, "count": self.count,
                           "supervisor": self.supervisor_pid, "ready_fd": self.ready_fd,
                           "sockets": self.sockets})

    def node_name(self, base: str) -> str:
        """The node name of this worker: stable across its restarts, so a restarted
        worker takes back at once what its killed predecessor held."""
        return f"{base}-w{self.index}"

    def adopt_listeners(self, listeners) -> None:
        """Give every listener service of ``listeners`` ((name, kind, service)) its
        inherited socket; ConfigurationError for one the supervisor did not open."""
        for name, kind, svc in listeners:
            key = f"{kind}:{name}"
            if key not in self.sockets:
                raise ConfigurationError(f"listener {key} has no socket from the "
                                         f"supervisor; run it with workers: 1")
            svc.shared_fd = self.sockets[key]

    def report_ready(self, node: str, listeners: dict) -> None:
        """Tell the supervisor this worker takes connections (one JSON line)."""
        line = json.dumps({"index": self.index, "pid": os.getpid(), "node": node,
                           "listeners": listeners}) + "\n"
        try:
            os.write(self.ready_fd, line.encode())
            os.close(self.ready_fd)
        except OSError:
            pass                  # the supervisor is gone: its watch stops this worker
