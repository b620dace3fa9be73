"""Reading a server's health resource: one typed result per probe, never an exception.

A ``Prober`` keeps one session to one target (``session.Session``) and reuses
it across probes (a new MCP client per probe costs ~30 ms of CPU, a reused
session ~1 ms). A failed read keeps the session unless the connection
failed; a 404 on a kept session (the server forgot it) is a stale session,
made again once within the same probe. Whatever ends a probe short of a
document becomes its outcome in ``errors``.

A ``Prober`` must be driven from a single task: the SDK's transports run in
anyio task groups that have to be entered and left by the same task.

Transports:
- ``streamable-http``: MCP over Streamable HTTP; ``mode="auto"`` negotiates
  the 2026 protocol or falls back to the initialize handshake. Once the
  session is made, each read is one ``resources/read`` POST sent by ``wire``
  (~0.3 ms of CPU a read instead of 1-2 ms through the SDK's client).
- ``sse``: MCP over the legacy SSE transport (the guide's transport). A GET
  answered with anything but an event stream (a Streamable HTTP endpoint's
  JSON, say) is a ``ProtocolError`` naming what answered and what to set.
- ``http``: a plain ``GET`` of the same JSON (the guide's ``curl .../health/status``).

No response is read past a bound, whatever the transport: a plain ``GET``
stops at ``max_bytes + 1``; any other body stops once it passes
``2 * max_bytes + 64 KiB`` (counted per server-sent event on event streams),
and a compressed body is refused unread (see ``session``). Such a probe ends
at once as ``InvalidDocument`` (or ``ProtocolError`` for an encoding) with a
message naming the limit.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp import Client, MCPError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_health_operator.core import health, judge
from mcp_health_operator.core.health import HealthCheckResponse
from mcp_health_operator.core.targets import Method, Target, Transport, endpoint
from mcp_health_operator.probing import errors, stalls
from mcp_health_operator.probing.errors import Outcome as Outcome
from mcp_health_operator.probing.errors import ProbeFailure as ProbeFailure
from mcp_health_operator.probing.errors import classify as classify
from mcp_health_operator.probing.session import ServerIdentity as ServerIdentity
from mcp_health_operator.probing.session import Session, handshake_slots

DEFAULT_TIMEOUT = 1.0
DEFAULT_REHANDSHAKE_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    outcome: Outcome
    latency_ms: float
    document: HealthCheckResponse | None = None
    message: str = ""
    server: ServerIdentity | None = None
    retry_after_s: float | None = None
    http_status: int | None = None
    # How the server was judged (None: not known, the probe failed first),
    # whether method "auto" fell back to the handshake, expected tools missing.
    method: Method | None = None
    fell_back: bool = False
    missing_tools: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def observation(self) -> judge.Observation:
        """What the judge reads of this probe."""
        return judge.Observation(
            outcome=self.outcome.value,
            latency_ms=self.latency_ms,
            document=self.document,
            message=self.message,
            method=None if self.method is None else self.method.value,
            fell_back=self.fell_back,
            missing_tools=self.missing_tools,
        )


class Prober:
    """One target, one reusable session, one ``ProbeResult`` per ``probe()``."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = health.DEFAULT_MAX_BYTES,
        rehandshake_after: float = DEFAULT_REHANDSHAKE_AFTER,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.rehandshake_after = rehandshake_after
        self._session = Session(
            target, timeout=timeout, max_bytes=max_bytes, rehandshake_after=rehandshake_after
        )
        # When the read of this probe began, if a session was made before it:
        # a probe's latency is its read's, not the handshake's (a start-up of
        # many monitors would otherwise read as slow servers).
        self._read_started: float | None = None
        # The loop's stall time (``stalls``) when the probe, and its read,
        # began: the operator's own waiting is not the server's latency.
        self._stall_at_start = 0.0
        self._stall_at_read = 0.0

    @functools.cached_property
    def url(self) -> str:
        return endpoint(self.target.url, self.target.transport)

    @property
    def _session_holder(self) -> object:
        """The holder of the SDK's client while one is held (tests compare it)."""
        return self._session.holder

    @property
    def _mcp_session_id(self) -> str | None:
        return self._session.mcp_session_id

    async def probe(self, *, timeout: float | None = None) -> ProbeResult:
        started = time.perf_counter()
        self._read_started = None
        self._stall_at_start = stalls.clock().total()
        budget = self.timeout if timeout is None else timeout
        session = self._session
        if session.steady:
            # The common case, kept free of anyio scopes and the SDK's client.
            session.answered = None
            try:
                async with stalls.Timeout(budget):
                    payload = await session.read()
                    document = self._parse(payload)
                return self._result(Outcome.OK, started, document=document)
            except errors.StaleSession:
                # The server forgot the session (it restarted): that says
                # nothing about the server; a new session, within what is
                # left of the budget.
                await session.discard()
            except Exception as exc:  # mapped by errors: a probe never raises
                failure = errors.failure(exc, budget=budget, max_bytes=self.max_bytes)
                if not failure.keep_session:
                    await session.discard()
                return self._failed(started, failure)
            return await self._probe_afresh(started, budget)
        if self.target.transport is Transport.HTTP or not session.needs_handshake():
            return await self._probe_afresh(started, budget)
        # A handshake costs ten times a read: a thousand monitors starting at
        # once would each time out while the others' handshakes hold the loop.
        # Waiting for a slot is the operator's queue, not the server's
        # latency, so the probe's clock starts after it.
        async with handshake_slots():
            self._stall_at_start = stalls.clock().total()
            return await self._probe_afresh(time.perf_counter(), budget)

    async def _probe_afresh(self, started: float, budget: float) -> ProbeResult:
        remaining = max(budget - (time.perf_counter() - started), 0.0)
        session = self._session
        session.forget_answers()
        try:
            with anyio.fail_after(remaining):
                document = await session.guarded(self._read_retrying)
        except Exception as exc:  # mapped by errors: a probe never raises
            # A read that timed out on a session just made leaves the session
            # as good as it was (as on the steady path); a handshake that
            # timed out, a refused body or any other failure leaves none.
            if (
                not isinstance(exc, TimeoutError)
                or session.refused is not None
                or not session.steady
            ):
                await session.discard(timed_out=isinstance(exc, TimeoutError))
            failure = errors.failure(
                exc,
                budget=budget,
                max_bytes=self.max_bytes,
                refused=session.refused,
                answered=session.answer_failure,
            )
            return self._failed(started, failure)
        return self._result(Outcome.OK, started, document=document)

    async def _read_retrying(self) -> HealthCheckResponse | None:
        """``_read``, and once more on a new session if the kept one had gone stale."""
        session = self._session
        try:
            return await self._read()
        except Exception as exc:
            if session.refused is not None or not (session.reused and errors.stale(exc)):
                raise
            # A kept session can go stale (server restarted, idle connection
            # dropped): that says nothing about the server.
            await session.discard()
            session.forget_answers()
            return await self._read()

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> str:
        """Call a tool on the target over the kept session; raises on any failure."""
        if self.target.transport is Transport.HTTP:
            raise ValueError("calling a tool needs an MCP transport, not plain http")
        with anyio.fail_after(timeout):
            client = await self._session.open(hold=True)
            result = await client.call_tool(name, arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content).strip()
        if result.is_error:
            raise RuntimeError(f"tool {name} failed: {text[:200]}")
        return text

    def _failed(self, started: float, failure: ProbeFailure) -> ProbeResult:
        return self._result(
            failure.outcome,
            started,
            message=failure.message,
            http_status=failure.http_status,
            retry_after_s=failure.retry_after_s,
        )

    def _result(self, outcome: Outcome, started: float, **fields: Any) -> ProbeResult:
        stall_at_start = self._stall_at_start
        read_started = self._read_started
        if outcome is Outcome.OK and read_started is not None and read_started > started:
            started, stall_at_start = read_started, self._stall_at_read
        self._read_started = None
        session = self._session
        answered = session.answered if outcome is Outcome.OK else None
        # Read through ``wire``, the read ended when its answer arrived: not
        # when this task ran, after those of answers that came with it.
        ended, stall_at_end = answered or (time.perf_counter(), stalls.clock().total())
        latency = max(ended - started - (stall_at_end - stall_at_start), 0.0) * 1000.0
        return ProbeResult(
            outcome=outcome,
            latency_ms=latency,
            server=session.identity,
            method=session.method,
            fell_back=session.fell_back,
            missing_tools=session.missing_tools,
            **fields,
        )

    def _parse(self, payload: str | bytes | None) -> HealthCheckResponse | None:
        """The document read, or None when the server answered the handshake request."""
        return None if payload is None else health.parse(payload, max_bytes=self.max_bytes)

    async def _read(self) -> HealthCheckResponse | None:
        payload: str | bytes | None
        if self.target.transport is Transport.HTTP:
            self._session.method = Method.HEALTH_RESOURCE
            payload = await self._get()
        else:
            client = await self._session_with_resources()
            self._read_started = time.perf_counter()
            self._stall_at_read = stalls.clock().total()
            self._session.answered = None  # the handshake's answer is not the read's
            if self.target.transport is Transport.STREAMABLE_HTTP:
                payload = await self._session.read()
            elif client is None:
                raise AssertionError("an SSE session is the SDK's client")
            elif self._session.method is Method.HANDSHAKE:
                await self._ping(client)
                payload = None
            else:
                payload = await self._read_resource(client)
        return self._parse(payload)

    # -- plain HTTP ---------------------------------------------------------

    async def _get(self) -> bytes:
        http = self._session.http_client()
        self._session.identity = ServerIdentity(None, None, None, Transport.HTTP)
        async with http.stream("GET", self.url, headers={"Accept": "application/json"}) as resp:
            failure = errors.get_failure(resp.status_code, resp.headers, urlsplit(self.url).path)
            if failure is not None:
                raise failure
            body = bytearray()
            # Read at most max_bytes + 1: enough to tell "too large" without
            # buffering whatever an endless body would send.
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ProbeFailure(
                        Outcome.INVALID_DOCUMENT,
                        f"health document exceeds the {self.max_bytes}-byte limit",
                    )
            if resp.status_code == 503:
                # A 503 is an unhealthy server's document, or no answer at all.
                try:
                    health.parse(bytes(body), max_bytes=self.max_bytes)
                except health.DocumentError:
                    raise errors.no_document(resp.status_code) from None
            return bytes(body)

    # -- MCP ---------------------------------------------------------------

    async def _session_with_resources(self) -> Client | None:
        """The session, which serves resources unless it judges by the handshake.

        None: a 2026 session made without the SDK's client (``Session.discover``).
        """
        session = self._session
        client = None
        if not await session.discover():
            client = await session.open()
        if self._session.method is Method.HEALTH_RESOURCE and not self._session.has_resources:
            raise ProbeFailure(
                Outcome.RESOURCE_NOT_FOUND,
                "server does not serve resources (it declares no resources capability)",
            )
        return client

    async def _ping(self, client: Client) -> None:
        """The handshake method through the SDK's client (SSE): ``server/discover`` or ``ping``."""
        version = client.protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            await client.session.send_discover(version)
            return
        with warnings.catch_warnings():
            # Deprecated for 2026-07-28 sessions only, which this is not.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.send_ping()

    async def _read_resource(self, client: Client) -> str | bytes:
        """``resources/read`` through the SDK's client: the text, or the blob decoded."""
        uri = self.target.resource_uri
        try:
            result = await client.read_resource(uri)
        except MCPError as exc:
            # Only an error saying the resource is missing is about the
            # resource; any other (a lost or stale session) is left as it is.
            missing = errors.missing_resource(exc.code, exc.message, uri)
            if missing is None:
                raise
            raise missing from None
        return errors.resource_payload(result.contents, uri, keep_session=False)

    async def aclose(self) -> None:
        await self._session.aclose()
