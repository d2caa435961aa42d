"""Fixtures: brokers on free ports with their own temp dirs, and a per-test watchdog."""

import shutil
import signal
import tempfile

import pytest

from harness import Broker

TEST_WATCHDOG_SECONDS = 60


@pytest.fixture(autouse=True)
def _watchdog():
    """No test may hang: each one fails after TEST_WATCHDOG_SECONDS."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the {TEST_WATCHDOG_SECONDS} s watchdog")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_WATCHDOG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="herald-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker_factory(workdir):
    """make(*flags, start=True, data_dir=None) -> a Broker with its own data dir under a temp
    dir; every broker made is stopped at teardown, and one that died on its own fails the test."""
    made = []

    def make(*flags, start=True, data_dir=None):
        d = data_dir or tempfile.mkdtemp(prefix="data-", dir=workdir)
        b = Broker(*flags, data_dir=d, workdir=workdir)
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    problems = []
    for b in made:
        problems += b.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory):
    """A broker with default flags."""
    return broker_factory()
