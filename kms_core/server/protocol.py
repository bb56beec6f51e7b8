"""uvicorn's httptools protocol, with a shutdown that does not wait on idle TLS clients.

On SIGTERM uvicorn closes idle keep-alive connections.  Closing a TLS
transport gracefully waits for the client's close_notify, which an idle
client (e.g. a boto3 connection pool) only sends when it next uses the
connection; the server would then hang for the whole graceful-shutdown
timeout.  An idle connection carries no request, so aborting it loses
nothing; connections with a request in flight still finish it.
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_extra_info("sslcontext") is not None:
            self.transport.abort()
        else:
            super().shutdown()
