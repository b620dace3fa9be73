"""The health document served at ``health://status``: the seed's HealthCheckResponse.

Purely data: pydantic models and a parser; no I/O.

Strict where the contract is an enum (``status``, ``database_status``, a
check's ``status``) and on numbers that cannot be true (NaN, infinities,
negative counts, utilization outside 0..1); lenient where the guide leaves
room: unknown fields are kept, ``checks`` entries carry any extra figures,
and the blocks a server without a database would not have are optional.

Every string of a parsed document can be written as UTF-8: JSON lets a
string escape a lone UTF-16 surrogate (``"\\ud800"``), which Python keeps
and which would make every later write of it (a status, an Event, the
CLI's output) raise; such surrogates become U+FFFD. Bytes are decoded
strictly (UTF-8, or the UTF-16/32 that JSON detects): json.loads alone
would let UTF-8-encoded surrogates through.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ReportedStatus = Literal["healthy", "degraded", "unhealthy"]
DatabaseStatus = Literal["connected", "disconnected", "degraded"]
CheckStatus = Literal["pass", "warn", "fail"]

NonNegativeInt = Annotated[int, Field(ge=0)]
FiniteNonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ConnectionPoolStats(_Lenient):
    """Connection pool statistics, as the server reports them."""

    total_connections: NonNegativeInt
    active_connections: NonNegativeInt
    idle_connections: NonNegativeInt
    waiting_requests: NonNegativeInt = 0
    pool_utilization: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class HealthCheckDetail(_Lenient):
    """One entry of ``checks``: a pass/warn/fail plus whatever figures it has."""

    status: CheckStatus
    latency_ms: FiniteNonNegative | None = None
    message: str | None = None
    usage_mb: FiniteNonNegative | None = None
    limit_mb: FiniteNonNegative | None = None
    percentage: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None

    def memory_fraction(self) -> float | None:
        """Memory use as 0..1, from ``percentage`` or ``usage_mb / limit_mb``."""
        if self.percentage is not None:
            return self.percentage / 100.0
        if self.usage_mb is not None and self.limit_mb:
            return self.usage_mb / self.limit_mb
        return None


class HealthCheckResponse(_Lenient):
    """The seed's HealthCheckResponse model."""

    status: ReportedStatus
    timestamp: datetime | None = None
    database_status: DatabaseStatus | None = None
    uptime_seconds: FiniteNonNegative | None = None
    connection_pool: ConnectionPoolStats | None = None
    checks: dict[str, HealthCheckDetail] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def database_latency_ms(self) -> float | None:
        check = self.checks.get("database")
        return check.latency_ms if check is not None else None

    def memory_fraction(self) -> float | None:
        check = self.checks.get("memory")
        return check.memory_fraction() if check is not None else None


class DocumentError(ValueError):
    """The payload is not a valid health document; the message names the field."""


DEFAULT_MAX_BYTES = 1 << 20

# A JSON escape of a UTF-16 surrogate, or (in a str payload) a surrogate itself.
_SURROGATE_HINT = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse(payload: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> HealthCheckResponse:
    """Parse a health document; any problem raises ``DocumentError`` naming it."""
    if isinstance(payload, str):
        # isascii() reads a flag of the str: an ASCII text is not copied to be measured.
        size = len(payload) if payload.isascii() else len(payload.encode("utf-8", "surrogatepass"))
    else:
        size = len(payload)
    if size > max_bytes:
        raise DocumentError(f"health document is {size} bytes, over the {max_bytes}-byte limit")
    if isinstance(payload, bytes):
        # As json.loads would decode bytes, but strictly: it lets UTF-8-encoded
        # surrogates through (surrogatepass), which are not UTF-8.
        encoding = json.detect_encoding(payload)
        try:
            payload = payload.decode(encoding)
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"health document is not JSON: not valid {encoding.upper()}"
                f" ({_short(exc.reason)} at byte {exc.start})"
            ) from None
    # Only a payload that could hold a lone surrogate is walked for one.
    suspect = _may_hold_surrogates(payload)
    if not suspect:
        # The common case in one pass of pydantic's own JSON parser: less
        # than half the CPU of json.loads and model_validate. What it refuses
        # is parsed again, by ``_parse_text``, which names the problem; what
        # it accepts, ``_parse_text`` would read the same (tests hold both to
        # that).
        try:
            return HealthCheckResponse.model_validate_json(payload)
        except (ValueError, RecursionError):
            pass
    return _parse_text(payload, suspect=suspect)


def _parse_text(text: str, *, suspect: bool) -> HealthCheckResponse:
    """json.loads, then the model: the parse that names any problem."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # json raises ValueError or RecursionError for absurd nesting; both
        # mean "not a JSON document".
        raise DocumentError(f"health document is not JSON: {_short(str(exc))}") from None
    return _validate(_without_surrogates(raw) if suspect else raw)


def _may_hold_surrogates(text: str) -> bool:
    """Whether ``text`` has a surrogate, or a JSON escape of one."""
    # The regular expression costs as much as parsing the document; an ASCII
    # text without a \u escape can hold neither, and most documents are that.
    if text.isascii() and "\\u" not in text:
        return False
    return _SURROGATE_HINT.search(text) is not None


def from_object(raw: object) -> HealthCheckResponse:
    """Validate an already-decoded JSON value as a health document."""
    return _validate(_without_surrogates(raw))


def _without_surrogates(raw: object) -> object:
    """A copy of ``raw`` with every lone surrogate in its strings and keys made U+FFFD.

    Iterative, so no nesting that JSON could decode makes it recurse too deep.
    """
    if not isinstance(raw, dict | list):
        return _fix(raw)
    top: dict[object, object] | list[object] = {} if isinstance(raw, dict) else []
    pending: list[tuple[dict[object, object] | list[object], dict[object, object] | list[object]]]
    pending = [(raw, top)]
    while pending:
        source, copy = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, dict | list):
                inner: dict[object, object] | list[object] = {} if isinstance(value, dict) else []
                pending.append((value, inner))
                value = inner
            else:
                value = _fix(value)
            if isinstance(copy, dict):
                copy[_fix(key)] = value
            else:
                copy.append(value)
    return top


def _fix(value: object) -> object:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def _validate(raw: object) -> HealthCheckResponse:
    if not isinstance(raw, dict):
        raise DocumentError(f"health document must be a JSON object, got {type(raw).__name__}")
    try:
        return HealthCheckResponse.model_validate(raw)
    except ValidationError as exc:
        raise DocumentError(describe(exc)) from None
    except RecursionError:
        raise DocumentError("health document is nested too deeply") from None


def describe(exc: ValidationError) -> str:
    """First validation error as ``field.path: message`` (then a count of the rest)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(document)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _short(f"{where}: {first['msg']}{more}")


def _short(text: str, limit: int = 300) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
