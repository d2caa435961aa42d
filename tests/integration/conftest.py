"""Fixtures: brokers on free ports with their own temp dirs, clients over each protocol, unique
topic names for brokers shared by a module, and a per-test watchdog."""

import itertools
import shutil
import signal
import tempfile

import pytest

from clients import PROTOCOLS
from clients import connect as connect_client
from h2_client import make_cert
from harness import Broker

TEST_WATCHDOG_SECONDS = 60

_topic_numbers = itertools.count(1)


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


@pytest.fixture(scope="session")
def tls_cert():
    """(cert, key): one self-signed certificate for localhost / 127.0.0.1 per session."""
    d = tempfile.mkdtemp(prefix="herald-it-cert-")
    yield make_cert(d)
    shutil.rmtree(d, ignore_errors=True)


class BrokerMaker:
    """make(*flags, start=True, data_dir=None, tls=False) -> a Broker with its own data dir
    under `workdir`; with tls=True it also listens for TLS (HTTP/2 and HTTP/1.1 by ALPN) on a
    free port with the session's certificate (`broker.cafile`). close() stops every broker made
    and returns what went wrong with them."""

    def __init__(self, workdir: str, cert):
        self.workdir = workdir
        self.cert = cert
        self.made: list[Broker] = []

    def __call__(self, *flags, start=True, data_dir=None, tls=False) -> Broker:
        d = data_dir or tempfile.mkdtemp(prefix="data-", dir=self.workdir)
        if tls:
            cert, key = self.cert
            flags = (*flags, "--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
        b = Broker(*flags, data_dir=d, workdir=self.workdir)
        if tls:
            b.cafile = self.cert[0]
        self.made.append(b)
        if start:
            b.start()
        return b

    def close(self) -> list[str]:
        problems = []
        for b in self.made:
            problems += b.close()
        return problems


@pytest.fixture
def broker_factory(workdir, tls_cert):
    """A BrokerMaker for this test: every broker made is stopped at teardown, and one that died
    on its own (or exited non-zero on SIGTERM, or printed a sanitizer report) fails the test."""
    make = BrokerMaker(workdir, tls_cert)
    yield make
    problems = make.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory):
    """A broker with default flags."""
    return broker_factory()


@pytest.fixture(scope="module")
def module_broker_factory(tls_cert):
    """A BrokerMaker whose brokers serve every test of a module (tests that share one use
    `new_topic` names, so they do not see each other's events). A broker that dies fails the
    test it died in (see `connect`); what is wrong at the end is an error of the module's last
    test."""
    d = tempfile.mkdtemp(prefix="herald-it-module-")
    make = BrokerMaker(d, tls_cert)
    yield make
    problems = make.close()
    shutil.rmtree(d, ignore_errors=True)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def proto_broker(module_broker_factory):
    """The module's broker with default flags, listening for HTTP/1.1 and h2c, and TLS."""
    return module_broker_factory(tls=True)


@pytest.fixture(params=PROTOCOLS)
def protocol(request):
    """Each test that uses it runs once per protocol: "h1", "h2c", "h2-tls"."""
    return request.param


@pytest.fixture
def connect(protocol):
    """connect(broker) -> a client of `broker` over this test's protocol (harness.Requests),
    closed at teardown; a broker connected to that died on its own fails the test."""
    made = []

    def make(broker):
        c = connect_client(broker, protocol)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
    dead = {id(c.broker): c.broker for c in made if c.broker.died()}
    reports = {id(c.broker): c.broker for c in made if c.broker.sanitizer_report()}
    problems = [f"herald exited during the test:\n{b.output_tail()}" for b in dead.values()]
    problems += [f"herald's output has a sanitizer report:\n{b.sanitizer_report()}"
                 for k, b in reports.items() if k not in dead]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def client(connect, proto_broker):
    """A client of the module's shared broker over this test's protocol."""
    return connect(proto_broker)


@pytest.fixture
def new_topic():
    """new_topic("name") -> "name-<n>", a topic no other test of the session uses."""
    return lambda name="t": f"{name}-{next(_topic_numbers)}"
