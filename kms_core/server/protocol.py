"""uvicorn's httptools protocol with two changes for ``kms serve``.

* **One write per response.**  uvicorn writes a response's head (status line
  and headers) when the app sends ``http.response.start`` and the body on
  ``http.response.body``: two ``send()`` system calls and, on a keep-alive
  connection with TCP_NODELAY, two segments that each wake the client.  Every
  KMS response is small and sent at once, so the head is held and written
  together with the body.  Any other write (a ``100 Continue``, a close, an
  error path) writes the held head first, so order is kept and nothing is
  lost.
* **Shutdown does not wait on idle TLS clients.**  On SIGTERM uvicorn closes
  idle keep-alive connections.  Closing a TLS transport gracefully waits for
  the client's close_notify, which an idle client (e.g. a boto3 connection
  pool) only sends when it next uses the connection; the server would then
  hang for the whole graceful-shutdown timeout.  An idle connection carries no
  request, so aborting it loses nothing; connections with a request in flight
  still finish it.
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Coalescing:
    """A transport that can hold one write and put it in front of the next."""

    __slots__ = ("transport", "holding", "_held")

    def __init__(self, transport):
        self.transport = transport
        self.holding = False
        self._held = None

    def write(self, data) -> None:
        if self.holding:
            self._held = data if self._held is None else self._held + data
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self.transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            self.holding = False
            self.write(b"")

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def __getattr__(self, name):  # everything else is the real transport's
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._coalescer = _Coalescing(self.transport)
        self.transport = self._coalescer

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.transport is not self._coalescer or "send" in vars(cycle):
            return  # an upgrade, or a cycle this protocol did not make
        plain, co = cycle.send, self._coalescer

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                co.holding = True  # the head waits for the body (or any other write)
                try:
                    await plain(message)
                finally:
                    co.holding = False
            else:
                await plain(message)
                co.flush()  # uvicorn writes no body for HEAD: the head must still go out

        cycle.send = send

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_extra_info("sslcontext") is not None:
            self.transport.abort()
        else:
            super().shutdown()
