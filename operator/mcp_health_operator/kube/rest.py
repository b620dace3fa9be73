"""The operator's frequent writes (status merge patches, Events) as plain requests.

Through lightkube, one status write and its Event cost about 2.5 times the
client CPU of the same two requests made by hand on an aiohttp session
(``bench/kube_writes.py``; the ``kubernetes_asyncio`` client costs as much as
lightkube): its resource models and httpx2's request and response objects
buy nothing for a merge patch of a dict. Connection and credentials come from
the lightkube client's own configuration: its server, its TLS context (CA and
client certificate), and the ``Authorization`` header its auth sets (a token,
a token file as kubelet rotates it, an exec plugin), asked again after a 401.
The periodic listing of the monitors goes the same way (``get``): only their
UIDs are wanted, which a metadata-only list gives without decoding objects.
So do the watches of the monitors and their Services (``lines``, on a session of their own).
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
from lightkube import AsyncClient
from lightkube.config.client_adapter import user_auth, verify_cluster

from mcp_health_operator import __version__

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"
# lightkube's default, kept: a write that takes longer is failed and retried
# by its caller (the next probe, the Event spool).
TIMEOUT_S = 10.0
USER_AGENT = f"mcp-health-operator/{__version__}"


class RestError(Exception):
    """A request the API server answered with a status other than the caller's expected ones."""

    def __init__(self, status: int, body: bytes) -> None:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Rest:
    """JSON requests to the API server on one aiohttp session (made on first use, in its loop)."""

    def __init__(self, client: AsyncClient) -> None:
        # lightkube keeps the configuration it connected with on its adapter.
        config: Any = client._client.config
        self.server = str(config.cluster.server).rstrip("/")
        self._user = config.user
        self._tls: ssl.SSLContext | bool = (
            verify_cluster(config.cluster, config.user, config.abs_file)
            if self.server.startswith("https:")
            else False
        )
        self._authorization: str | None = None
        self._authorized = False
        self._session: aiohttp.ClientSession | None = None
        self._streams: aiohttp.ClientSession | None = None

    async def send(
        self, method: str, path: str, body: dict[str, Any], content_type: str = JSON
    ) -> tuple[int, bytes]:
        """The status and body of the answer; a 401 asks the credentials again, once."""
        data = json.dumps(body, separators=(",", ":")).encode()
        return await self._exchange(
            method, path, data, {"Content-Type": content_type, "Accept": JSON}
        )

    async def get(self, path: str, *, accept: str = JSON) -> tuple[int, bytes]:
        """The status and body of a GET (``path`` with its query), as ``send``."""
        return await self._exchange("GET", path, None, {"Accept": accept})

    async def lines(self, path: str, *, read_timeout_s: float) -> AsyncIterator[bytes]:
        """The lines of a streamed GET (a watch), as they come; RestError for any answer but 200.

        ``read_timeout_s``: the longest quiet spell before the stream is given
        up (a watch is quiet for as long as nothing changes).
        """
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=TIMEOUT_S, sock_read=read_timeout_s
        )
        async with self._answer("GET", path, None, {"Accept": JSON}, timeout) as resp:
            if resp.status != 200:
                raise RestError(resp.status, await resp.read())
            async for line in split_lines(resp.content.iter_any()):
                yield line

    async def _exchange(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        async with self._answer(method, path, data, headers) as resp:
            return resp.status, await resp.read()

    @contextlib.asynccontextmanager
    async def _answer(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response; after a 401, the credentials are asked again and the request made again.

        ``timeout``: given for a stream (a watch), which goes on the streams' session.
        """
        session = self._session_for(stream=timeout is not None)
        for attempt in range(2):
            if not self._authorized or attempt:
                await self._authorize()
            sent = headers
            if self._authorization is not None:
                sent = {**headers, "Authorization": self._authorization}
            async with session.request(
                method,
                self.server + path,
                data=data,
                headers=sent,
                ssl=self._tls,
                timeout=timeout or session.timeout,
            ) as resp:
                if resp.status == 401 and not attempt:
                    continue
                yield resp
                return

    def _session_for(self, *, stream: bool) -> aiohttp.ClientSession:
        # A watch holds its connection for minutes: watches get a session of
        # their own, so that they never take the writes' pooled connections.
        session = self._streams if stream else self._session
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                # Per connection and per read, not in total: at a cold start
                # thousands of requests wait their turn for the pool's
                # connections, and that wait is no failure of the API server.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=TIMEOUT_S, sock_read=TIMEOUT_S
                ),
                connector=aiohttp.TCPConnector(limit=0) if stream else None,
                cookie_jar=aiohttp.DummyCookieJar(),
                # The API server names the field manager of each write after
                # it: "mcp-health-operator" in managedFields, not "Python".
                headers={"User-Agent": USER_AGENT},
            )
            if stream:
                self._streams = session
            else:
                self._session = session
        return session

    async def _authorize(self) -> None:
        """The header lightkube's auth would set, from a fresh auth (a token file re-read)."""
        auth = user_auth(self._user)
        self._authorized = True
        if auth is None:  # a client certificate, in the TLS context
            self._authorization = None
            return
        flow = auth.async_auth_flow(httpx2.Request("GET", self.server))
        request = await flow.__anext__()
        await flow.aclose()
        self._authorization = request.headers.get("Authorization")

    async def close(self) -> None:
        for session in (self._session, self._streams):
            if session is not None:
                await session.close()
        self._session = self._streams = None


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole lines from chunks cut anywhere (a watch event is one line, of any length)."""
    rest = b""
    async for chunk in chunks:
        *whole, rest = (rest + chunk).split(b"\n")
        for line in whole:
            if line.strip():
                yield line
    if rest.strip():
        yield rest
