"""The one place a failure becomes an outcome.

Whatever stops a probe short of a document (an exception from the SDK,
httpx2, ``wire``, an HTTP status, a JSON-RPC error, a document
that does not parse) becomes a ``ProbeFailure`` here: an ``Outcome`` and a
message fit for a status condition and an Event (bounded, no secrets).
``failure`` maps whatever ended a probe; the rest judge an answer the probe
read. Only a check that sees a failure first-hand (a body past its bound, a
server without resources) raises its own ``ProbeFailure`` where it looks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from urllib.parse import urlsplit

import httpx2
from mcp import MCPError
from mcp.client.streamable_http import MCP_SESSION_ID
from mcp_types.jsonrpc import CONNECTION_CLOSED, INVALID_REQUEST, METHOD_NOT_FOUND

from mcp_health_operator.core import health
from mcp_health_operator.core.targets import DEFAULT_PATHS, Transport
from mcp_health_operator.probing import wire


class Outcome(StrEnum):
    OK = "Ok"
    TIMEOUT = "Timeout"
    UNREACHABLE = "Unreachable"
    INVALID_DOCUMENT = "InvalidDocument"
    RESOURCE_NOT_FOUND = "ResourceNotFound"
    UNAUTHORIZED = "Unauthorized"
    RATE_LIMITED = "RateLimited"
    PROTOCOL_ERROR = "ProtocolError"


class ProbeFailure(Exception):
    """A classified failure on the way to a document; becomes a ``ProbeResult``."""

    def __init__(
        self,
        outcome: Outcome,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        keep_session: bool = False,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        # The server answered on a working session: no reason to make a new one.
        self.keep_session = keep_session


class StaleSession(ProbeFailure):
    """A 404 on the session's id: the server no longer knows the session."""

    def __init__(self, path: str) -> None:
        super().__init__(
            Outcome.PROTOCOL_ERROR, f"no MCP session at {path} (HTTP 404)", http_status=404
        )


def failure(
    exc: BaseException,
    *,
    budget: float,
    max_bytes: int,
    refused: ProbeFailure | None = None,
    answered: Callable[[], ProbeFailure | None] | None = None,
) -> ProbeFailure:
    """What ``exc``, which ended a probe of ``budget`` seconds, means.

    ``refused``: a response body refused mid-read, which ended the probe (the
    SDK then raises something vaguer, or the probe times out). ``answered``:
    what an HTTP answer the SDK reports vaguely really said. Both explain
    whatever is not a failure of the probe's own making.
    """
    if isinstance(exc, ProbeFailure):
        return exc
    if isinstance(exc, TimeoutError):
        # The probe's own budget ran out; the session may be as good as it was.
        timed_out = ProbeFailure(
            Outcome.TIMEOUT, f"no answer within {budget:g}s", keep_session=True
        )
        return refused or timed_out
    # What a read found wrong: the server answered, so its session is kept
    # (unless the connection was lost).
    if isinstance(exc, health.DocumentError):
        return ProbeFailure(Outcome.INVALID_DOCUMENT, str(exc), keep_session=True)
    if isinstance(exc, wire.TooLarge):
        return ProbeFailure(
            Outcome.INVALID_DOCUMENT,
            f"{exc} (for a health document of at most {max_bytes} bytes); stopped reading",
            keep_session=True,
        )
    if isinstance(exc, wire.Encoded):
        return ProbeFailure(Outcome.PROTOCOL_ERROR, encoded(exc.encoding), keep_session=True)
    if isinstance(exc, wire.Malformed):
        return ProbeFailure(Outcome.PROTOCOL_ERROR, f"resources/read: {exc}", keep_session=True)
    if isinstance(exc, wire.Lost):
        return ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost")
    if isinstance(exc, wire.CannotConnect):
        return cannot_connect(exc.host, exc.port, exc.os_error)
    # A refused body first: once the probe gave up on a session, the SDK's
    # requests on it may meet 404s that say nothing.
    return refused or (answered() if answered else None) or classify(exc)


def classify(exc: BaseException) -> ProbeFailure:
    """Map whatever the SDK or HTTP stack raised to an outcome, without leaking secrets."""
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, ProbeFailure):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            code = leaf.response.status_code
            known = status_failure(code, leaf.response.headers)
            if known is not None:
                return known
            return ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"server answered HTTP {code}", http_status=code
            )
    for leaf in leaves:
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            return ProbeFailure(Outcome.TIMEOUT, "timed out")
    for leaf in leaves:
        if isinstance(leaf, wire.CannotConnect):
            return cannot_connect(leaf.host, leaf.port, leaf.os_error)
        if isinstance(leaf, wire.Lost):
            return ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost")
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError | ConnectionError | OSError):
            return ProbeFailure(Outcome.UNREACHABLE, f"cannot connect: {short(str(leaf))}")
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return ProbeFailure(Outcome.UNREACHABLE, "connection to the server was lost")
            if not_found(leaf.code, leaf.message):
                return ProbeFailure(Outcome.RESOURCE_NOT_FOUND, short(leaf.message))
            return ProbeFailure(
                Outcome.PROTOCOL_ERROR, f"MCP error {leaf.code}: {short(leaf.message)}"
            )
    for leaf in leaves:
        if isinstance(leaf, httpx2.TransportError):
            return ProbeFailure(Outcome.UNREACHABLE, f"{type(leaf).__name__}: {short(str(leaf))}")
    first = leaves[0] if leaves else exc
    return ProbeFailure(Outcome.PROTOCOL_ERROR, f"{type(first).__name__}: {short(str(first))}")


def cannot_connect(host: str, port: int, os_error: OSError) -> ProbeFailure:
    # Name host, port and the OS error only (this message goes to status and
    # Events; an SSL error's str() may carry more than a reader needs).
    why = os_error.strerror or str(os_error) or type(os_error).__name__
    return ProbeFailure(Outcome.UNREACHABLE, f"cannot connect to {host}:{port}: {short(why)}")


def _leaves(exc: BaseException, depth: int = 0) -> list[BaseException]:
    """Exceptions inside groups and cause chains, outermost first."""
    if depth > 10:
        return []
    found: list[BaseException] = []
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found += _leaves(sub, depth + 1)
        return found
    found.append(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        found += _leaves(cause, depth + 1)
    return found


def stale(exc: Exception) -> bool:
    """Whether ``exc``, met on a kept session, says only that the session is gone.

    A kept session goes stale when the server restarts or an idle connection
    drops: that says nothing about the server.
    """
    if isinstance(exc, StaleSession):
        return True
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED or (
            exc.code == INVALID_REQUEST and "session terminated" in exc.message.lower()
        )
    return isinstance(exc, httpx2.TransportError)


# -- HTTP statuses -------------------------------------------------------------


def status_failure(code: int, headers: Mapping[str, str]) -> ProbeFailure | None:
    """A status that is an outcome of its own, whatever the body: 401, 403, 429."""
    if code in (401, 403):
        return ProbeFailure(
            Outcome.UNAUTHORIZED, f"server refused the credentials (HTTP {code})", http_status=code
        )
    if code == 429:
        retry = _retry_after(headers.get("retry-after"))
        hint = f", retry after {retry:g}s" if retry is not None else ""
        return ProbeFailure(
            Outcome.RATE_LIMITED,
            f"server is rate-limiting (HTTP 429{hint})",
            http_status=code,
            retry_after_s=retry,
        )
    return None


def get_failure(code: int, headers: Mapping[str, str], path: str) -> ProbeFailure | None:
    """What the status of a plain ``GET`` of the document means, if it is no document."""
    known = status_failure(code, headers)
    if known is not None:
        return known
    if code == 404:
        return ProbeFailure(Outcome.RESOURCE_NOT_FOUND, f"GET {path} answered 404", http_status=404)
    # A health endpoint answers 503 with its document when unhealthy (so
    # readiness probes follow it); any other error is no document.
    if code >= 400 and code != 503:
        return ProbeFailure(Outcome.PROTOCOL_ERROR, f"GET answered HTTP {code}", http_status=code)
    return None


def reply_failure(
    reply: wire.Reply, *, method: str, uri: str, session_id: str | None
) -> ProbeFailure | None:
    """What an answer to ``method`` through ``wire`` means, if it carries no result.

    The server answered, so the session is kept, unless it forgot the
    session (a ``StaleSession``).
    """
    status, message = reply.status, reply.message
    known = status_failure(status, reply.headers)
    if known is not None:
        known.keep_session = True
        return known
    if status == 404 and session_id is not None:
        return StaleSession(urlsplit(reply.url).path)
    if message is not None and "error" in message:
        return rpc_failure(message["error"], uri if method == "resources/read" else None)
    if status == 404 and method == "resources/read":
        # What the SDK makes of a 404 without a session: no such method.
        return ProbeFailure(
            Outcome.RESOURCE_NOT_FOUND,
            "server does not serve resources (resources/read: HTTP 404)",
            http_status=404,
            keep_session=True,
        )
    if not 200 <= status < 300:
        return ProbeFailure(
            Outcome.PROTOCOL_ERROR,
            f"{method} answered HTTP {status}",
            http_status=status,
            keep_session=True,
        )
    if message is None:
        what = (
            "202 Accepted and no answer"
            if status == 202
            else short(reply.content_type or "no content type", 60)
        )
        return ProbeFailure(Outcome.PROTOCOL_ERROR, f"{method} answered {what}", keep_session=True)
    return None


def answer_failure(
    url: str,
    http_error: tuple[int, Mapping[str, str]] | None,
    sse_answer: tuple[int, Mapping[str, str]] | None,
) -> ProbeFailure | None:
    """What an HTTP answer the SDK reports vaguely (or as unreachable) really said.

    ``http_error``: the last answer of 400 or more on the session's HTTP
    clients. ``sse_answer``: what answered the SSE transport's GET when it
    was no event stream.
    """
    found = None
    if http_error is not None:
        code, headers = http_error
        found = status_failure(code, headers)
        if found is None and code == 404:
            found = ProbeFailure(
                Outcome.PROTOCOL_ERROR,
                f"no MCP endpoint at {urlsplit(url).path} (HTTP 404)",
                http_status=code,
            )
    if found is None and sse_answer is not None:
        code, headers = sse_answer
        received = short(headers.get("content-type", "").partition(";")[0], 60)
        # A Streamable HTTP endpoint answers a GET in JSON (a JSON-RPC
        # error without a session) or with a session id.
        if received.lower() == "application/json" or MCP_SESSION_ID in headers:
            fix = "is this a streamable-HTTP endpoint? set transport: streamable-http"
        elif 200 <= code < 300:
            path, default = urlsplit(url).path or "/", DEFAULT_PATHS[Transport.SSE]
            usual = "" if path == default else f" (by default {default})"
            fix = (
                f"is {path} the server's SSE endpoint{usual}? point the URL at it,"
                " or set the transport the server speaks"
            )
        else:
            return None  # a server error like any other (see classify)
        found = ProbeFailure(
            Outcome.PROTOCOL_ERROR,
            f"SSE endpoint answered HTTP {code} {received or 'without a content type'},"
            f" not text/event-stream: {fix}",
            http_status=code,
        )
    return found


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


# -- JSON-RPC errors -------------------------------------------------------------

# JSON-RPC: -32002 is MCP's "resource not found"; some servers use invalid params.
_NOT_FOUND_CODES = {-32002, -32602}


def not_found(code: int, message: str) -> bool:
    if code == -32002:
        return True
    return code in _NOT_FOUND_CODES and any(
        word in message.lower() for word in ("unknown resource", "not found")
    )


def missing_resource(
    code: object, message: str, uri: str, *, keep_session: bool = False
) -> ProbeFailure | None:
    """The failure when an error answering ``resources/read`` says the resource is missing."""
    if code == METHOD_NOT_FOUND:
        return ProbeFailure(
            Outcome.RESOURCE_NOT_FOUND,
            "server does not serve resources (resources/read: method not found)",
            keep_session=keep_session,
        )
    if isinstance(code, int) and not_found(code, message):
        return ProbeFailure(
            Outcome.RESOURCE_NOT_FOUND,
            f"resource {uri} not found: {short(message)}",
            keep_session=keep_session,
        )
    return None


def rpc_failure(error: object, uri: str | None) -> ProbeFailure:
    """A JSON-RPC error answering a request through ``wire`` (``uri``: of a ``resources/read``)."""
    if not isinstance(error, dict):
        return ProbeFailure(Outcome.PROTOCOL_ERROR, "malformed JSON-RPC error", keep_session=True)
    code, text = error.get("code"), str(error.get("message", ""))
    missing = None if uri is None else missing_resource(code, text, uri, keep_session=True)
    if missing is not None:
        return missing
    return ProbeFailure(
        Outcome.PROTOCOL_ERROR,
        f"MCP error {short(str(code), 20)}: {short(text)}",
        keep_session=True,
    )


# -- what was read ---------------------------------------------------------------


def resource_payload(contents: object, uri: str, *, keep_session: bool) -> str | bytes:
    """The first of a ``resources/read`` result's contents: its text, or its blob decoded.

    ``contents``: the SDK's models, or the JSON a ``wire`` read answered.
    """
    if not isinstance(contents, list):
        raise ProbeFailure(
            Outcome.PROTOCOL_ERROR,
            "resources/read answered without a list of contents",
            keep_session=keep_session,
        )
    if not contents:
        raise ProbeFailure(
            Outcome.INVALID_DOCUMENT,
            f"resource {uri} returned no contents",
            keep_session=keep_session,
        )
    first = contents[0]
    text, blob = (
        (first.get("text"), first.get("blob"))
        if isinstance(first, dict)
        else (getattr(first, "text", None), getattr(first, "blob", None))
    )
    if isinstance(text, str):
        return text
    if isinstance(blob, str):
        import base64

        try:
            return base64.b64decode(blob, validate=True)
        except ValueError:
            raise ProbeFailure(
                Outcome.INVALID_DOCUMENT,
                "resource blob is not valid base64",
                keep_session=keep_session,
            ) from None
    raise ProbeFailure(
        Outcome.INVALID_DOCUMENT,
        "resource contents are neither text nor blob",
        keep_session=keep_session,
    )


def no_document(code: int) -> ProbeFailure:
    """A plain ``GET`` answered an error status whose body is no health document."""
    return ProbeFailure(
        Outcome.PROTOCOL_ERROR,
        f"GET answered HTTP {code} without a health document",
        http_status=code,
    )


# -- messages ------------------------------------------------------------------


def encoded(encoding: str) -> str:
    return (
        f"response is {short(encoding, 40)}-encoded though the probe asked for"
        " identity; refused, as its decoded size cannot be bounded"
    )


def short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
