"""Checks that hold for every test in the suite.

No task outlives its test: when pytest-asyncio is about to close the event loop a test ran in
(after the test and every async fixture on that loop have been torn down), any task of that loop
still pending fails the test at teardown, named with the coroutine it runs. The loop would
otherwise cancel it silently, hiding a task that a ``stop()``/``close()`` forgot, or a test
that never awaited what it started. This applies to every async test, and to every sync test
that uses an async fixture (both run on a function-scoped loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest
import pytest_asyncio.plugin

# pytest-asyncio's fixture holding an ``asyncio.Runner`` per loop scope: "_function_scoped_runner",
# "_module_scoped_runner", ... (private to it, but pinned in requirements/dev.txt).
_RUNNER_SUFFIX = "_scoped_runner"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run if pytest-asyncio no longer has the runner fixture the check hooks into.

    Without it the check would silently check nothing; a new pytest-asyncio must be looked at.
    """
    if not hasattr(pytest_asyncio.plugin, "_function" + _RUNNER_SUFFIX):
        raise pytest.UsageError(
            "tests/conftest.py: pytest-asyncio has no _function_scoped_runner fixture any more; "
            "the leftover-task check must be adapted to it"
        )


def leftover_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """The tasks of ``loop`` not done, after letting just-cancelled ones finish.

    A few loop iterations first: a task cancelled by the last teardown, or a connection just
    closed, needs them to finish; nothing the test started is awaited beyond that.
    """

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    loop.run_until_complete(settle())
    return [t for t in asyncio.all_tasks(loop) if not t.done()]


def fail_on_leftover_tasks(runner: asyncio.Runner) -> None:
    """Raise AssertionError naming every task still pending on ``runner``'s loop (cancelled)."""
    leftovers = leftover_tasks(runner.get_loop())
    message = f"tasks left running: {leftovers}"
    for task in leftovers:
        task.cancel()
    assert not leftovers, message


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Check for leftover tasks just before a pytest-asyncio runner closes its loop.

    Added after the runner is set up, the check runs before the runner's own teardown (which
    cancels what is left and closes the loop) and after every async fixture's teardown
    (pytest-asyncio registers those on the runner, later still).
    """
    result = yield
    if fixturedef.argname.startswith("_") and fixturedef.argname.endswith(_RUNNER_SUFFIX):
        runner: asyncio.Runner = result
        fixturedef.addfinalizer(lambda: fail_on_leftover_tasks(runner))
    return result
