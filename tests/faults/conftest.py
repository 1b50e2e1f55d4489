"""One running stack for the whole fault suite (starting it costs a few seconds).

Each test breaks one part, checks the invariants while it is broken, repairs it,
and leaves the stack healthy for the next (``reader.healthy()`` at both ends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.faults.stack import Reader, Stack, running_stack

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("faults")
    with running_stack(tmp) as running:
        yield running


@pytest.fixture
async def reader(stack: Stack) -> AsyncIterator[Reader]:
    reader = Reader(stack)
    try:
        await reader.healthy()
        yield reader
        await reader.healthy()
    finally:
        await reader.close()
