"""How ``ernie-tiny serve`` runs under uvicorn: a SIGTERM that answers every connection it accepted.

On SIGTERM (or Ctrl-C) uvicorn closes its listening socket, lets each request in progress finish (the
response then closes its connection), waits up to ``--graceful-timeout`` seconds for them, and closes
every other connection at once. "Every other" included connections accepted a moment earlier whose
request uvicorn had not read yet: on loopback the request arrives microseconds after the connect, so
under load many clients saw their connection reset after it was accepted (issue 26: 44 of 200).
:class:`DrainingH11Protocol` gives an idle connection :data:`IDLE_GRACE_S` to deliver a request; one that
arrives is answered, with ``Connection: close``.

What stays, and is a property of TCP rather than of the server: connections the kernel had completed
but the server had not yet accepted when the listening socket closed (the listen backlog) are reset by
the kernel, and later connects are refused. Neither reached the server, so a client may retry both.

Imports no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from uvicorn.protocols.http.h11_impl import H11Protocol

IDLE_GRACE_S = 0.5  # how long a connection without a request in progress may still send one after SIGTERM
logger = logging.getLogger("uvicorn.error")


@dataclass
class ConnectionCounts:
    """This process's connections, as the exit line reports them."""

    accepted: int = 0
    closed_without_request: int = 0  # at shutdown, after the grace: 0 unless a client connected and sent nothing


CONNECTIONS = ConnectionCounts()


class DrainingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, except that shutdown waits :data:`IDLE_GRACE_S` for a request on an idle
    connection instead of closing it unanswered; counts the connections it accepts."""

    answered_any = False  # whether this connection has completed a response

    def connection_made(self, transport) -> None:  # type: ignore[override]
        CONNECTIONS.accepted += 1
        super().connection_made(transport)

    def on_response_complete(self) -> None:
        self.answered_any = True
        super().on_response_complete()

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(IDLE_GRACE_S, self.close_after_grace)
        else:
            self.cycle.keep_alive = False  # uvicorn's own: answer, then close

    def close_after_grace(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None and not self.answered_any:
            CONNECTIONS.closed_without_request += 1
            logger.warning("closing a connection that sent no request within %g s of the shutdown", IDLE_GRACE_S)
        super().shutdown()  # idle still: closed; a request came meanwhile: answered, then closed


def answered_summary(registry: CollectorRegistry) -> str:
    """``answered at exit: /v1/predict 200: 120, ...; connections: 121 accepted, 0 closed without a request``:
    the request counter of ``/metrics`` and, under :class:`DrainingH11Protocol`, the connection counts."""
    counts = []
    for family in registry.collect():
        if family.name == "ernie_tiny_requests":
            counts += [(s.labels["endpoint"], s.labels["code"], int(s.value)) for s in family.samples
                       if s.name == "ernie_tiny_requests_total"]
    shown = ", ".join(f"{endpoint} {code}: {count}" for endpoint, code, count in sorted(counts)) or "no requests"
    if CONNECTIONS.accepted:
        shown += (f"; connections: {CONNECTIONS.accepted} accepted, {CONNECTIONS.closed_without_request} closed "
                  "without a request")
    return f"answered at exit: {shown}"
