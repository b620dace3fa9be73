"""A watch's stream cut into lines, wherever its chunks were cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mcp_health_operator.kube.rest import split_lines


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _lines(*parts: bytes) -> list[bytes]:
    async def go() -> list[bytes]:
        return [line async for line in split_lines(_chunks(*parts))]

    return asyncio.run(go())


@pytest.mark.parametrize(
    "parts",
    [
        (b'{"a":1}\n{"b":2}\n',),
        (b'{"a"', b":1}\n{", b'"b":2}', b"\n"),
        (b'{"a":1}\n', b'{"b":2}'),  # the last line without its newline
        (b'{"a":1}\n\n', b"\n", b'{"b":2}\n\n'),  # blank lines are no events
        tuple(bytes([c]) for c in b'{"a":1}\n{"b":2}\n'),  # a byte at a time
    ],
)
def test_whole_lines_whatever_the_chunks(parts: tuple[bytes, ...]) -> None:
    assert _lines(*parts) == [b'{"a":1}', b'{"b":2}']


def test_a_line_longer_than_any_buffer() -> None:
    line = b'{"x":"' + b"y" * 300_000 + b'"}'
    parts = [line[i : i + 16_384] for i in range(0, len(line), 16_384)]
    assert _lines(*parts, b"\n") == [line]
