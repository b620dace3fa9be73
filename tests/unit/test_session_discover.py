"""What a ``server/discover`` result says: a 2026 server, or leave it to the SDK."""

from __future__ import annotations

from typing import Any

from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcp_health_operator.probing.session import _discovered

MODERN = MODERN_PROTOCOL_VERSIONS[-1]


def _result(**fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "supportedVersions": [MODERN],
        "capabilities": {"resources": {}},
    }
    result.update(fields)
    return result


def test_a_modern_result_names_version_identity_and_capabilities() -> None:
    stamp = {SERVER_INFO_META_KEY: {"name": "db", "version": "1.2"}}
    found = _discovered(_result(_meta=stamp))
    assert found is not None
    version, info, capabilities = found
    assert version == MODERN
    assert info is not None and (info.name, info.version) == ("db", "1.2")
    assert capabilities.resources is not None and capabilities.tools is None


def test_an_absent_or_malformed_identity_reads_as_none() -> None:
    for meta in ({}, {SERVER_INFO_META_KEY: {"name": 3}}, {SERVER_INFO_META_KEY: "x"}):
        found = _discovered(_result(_meta=meta))
        assert found is not None and found[1] is None, meta


def test_anything_but_a_modern_result_is_left_to_the_sdk() -> None:
    legacy_only = _result(supportedVersions=[HANDSHAKE_PROTOCOL_VERSIONS[-1]])
    answers: list[Any] = [None, [], "ok", {}, {"capabilities": {}}, legacy_only]
    for answer in answers:
        assert _discovered(answer) is None, answer
