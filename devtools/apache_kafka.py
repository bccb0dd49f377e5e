"""A real Apache Kafka 4.x broker for the tests and the bench: single node, KRaft, from its jars.

Rules it keeps:

* The broker is ``org.apache.kafka:kafka_2.13`` at ``KAFKA_VERSION`` (default
  ``VERSION``), resolved with its runtime dependencies by Maven (a generated pom
  and ``mvn dependency:copy-dependencies``) into a cache folder
  (``~/.cache/provider-backoffice/kafka-<version>/jars``, or under
  ``KAFKA_JARS_CACHE``), reused when present: only the first run downloads.
  Java 17 and Maven must be installed (``.ci/run`` installs them when missing).
* Each broker gets a fresh temporary folder: a generated ``server.properties``
  (broker and controller in one process, free ports on 127.0.0.1, every topic
  kept: ``log.retention.ms=-1``), a log formatted by
  ``kafka.tools.StorageTool format --standalone``; the folder is removed when the
  broker ends, however it ends.
* ``start`` returns only once the broker answers a metadata request; ``stop``
  ends the JVM (SIGTERM, then SIGKILL) and waits for it; ``kill`` is the crash
  (SIGKILL). A broker stopped or killed starts again on the same ports and log,
  keeping what it had acknowledged (the tests' broker crash).
* With ``users`` the broker only speaks SASL/SCRAM-SHA-256 to clients (their
  credentials are written into the log at format time), authorizes with
  Kafka's ``StandardAuthorizer`` (nothing allowed without an ACL, the ``admin``
  user excepted) and ``acl(...)`` adds an ACL.

Usage: ``python -m devtools.apache_kafka -- pytest -q`` runs the command with
``KAFKA_BOOTSTRAP_SERVERS`` naming the broker; ``python -m devtools.apache_kafka
--fetch`` only fills the cache. As a context manager: ``with ApacheKafka() as
broker: broker.bootstrap``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from devtools.devbroker import free_port

VERSION = "4.1.1"
SCALA = "2.13"
ADMIN_USER = "admin"
START_TIMEOUT = 90.0
# A small heap: the tests' broker holds little, and four other JVM-less engineers share the cores.
JVM_OPTIONS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.awt.headless=true"]  # fmt: skip
# Quiet log4j2: warnings and errors only, into the broker's own log file.
LOG4J2 = """\
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
"""

POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>provider-backoffice</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""


def version() -> str:
    return os.environ.get("KAFKA_VERSION", VERSION)


def cache_dir(kafka_version: str | None = None) -> Path:
    root = os.environ.get("KAFKA_JARS_CACHE") or Path.home() / ".cache" / "provider-backoffice"
    return Path(root) / f"kafka-{kafka_version or version()}"


def jars(kafka_version: str | None = None) -> Path:
    """The folder of the broker's jars and their dependencies, resolved once with Maven."""
    folder = cache_dir(kafka_version)
    jars_dir = folder / "jars"
    done = folder / "complete"
    if done.exists():
        return jars_dir
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise SystemExit(
            "Apache Kafka for the tests needs Java 17+ and Maven: apt-get install "
            "openjdk-17-jre-headless maven (.ci/run does it)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # Resolved aside and moved into place: a run stopped halfway never leaves a
    # folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=folder))
    wanted = kafka_version or version()
    try:
        (staging / "pom.xml").write_text(POM.format(scala=SCALA, version=wanted))
        subprocess.run(
            ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(staging / "pom.xml"),
             "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging / 'jars'}"],
            check=True,
        )  # fmt: skip
        shutil.rmtree(jars_dir, ignore_errors=True)
        (staging / "jars").rename(jars_dir)
        done.write_text(wanted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return jars_dir


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class ApacheKafka:
    """One single-node KRaft broker in a temporary folder (see the module's rules)."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        kafka_version: str | None = None,
    ) -> None:
        self.kafka_version = kafka_version or version()
        self.users = dict(users or {})
        if self.users and ADMIN_USER not in self.users:
            self.users[ADMIN_USER] = uuid.uuid4().hex
        self.extra = dict(settings or {})
        self.port = free_port()
        self.controller_port = free_port()
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secured(self) -> bool:
        return bool(self.users)

    # -- life -----------------------------------------------------------------

    def __enter__(self) -> ApacheKafka:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Format the log (first start only), start the JVM, wait until it answers."""
        jar_dir = jars(self.kafka_version)
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
            (self.folder / "log4j2.properties").write_text(LOG4J2)
            (self.folder / "server.properties").write_text(self._properties())
            self._java(jar_dir, "kafka.tools.StorageTool", "format", "--standalone",
                       # One token: an id may start with "-" (base64url), which
                       # argparse would take for an option after a separate "-t".
                       f"--cluster-id={_cluster_id()}",
                       "-c", str(self.folder / "server.properties"),
                       *self._scram_arguments(), check=True)  # fmt: skip
        log = (self.folder / "server.log").open("ab")
        try:
            self.process = subprocess.Popen(
                self._command(jar_dir, "kafka.Kafka", str(self.folder / "server.properties")),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self._wait_until_answering()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM; SIGKILL after 30 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed that the broker had not written."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the broker and remove its folder."""
        try:
            self.stop()
        finally:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    # -- ACLs -----------------------------------------------------------------

    def acl(self, *arguments: str) -> None:
        """``kafka-acls.sh`` with these arguments (``--add --allow-principal User:x ...``),
        run as the broker's admin user."""
        assert self.folder is not None and self.secured
        config = self.folder / "admin.properties"
        config.write_text(self.client_properties(ADMIN_USER))
        self._java(jars(self.kafka_version), "org.apache.kafka.tools.AclCommand",
                   "--bootstrap-server", self.bootstrap, "--command-config", str(config),
                   *arguments, check=True)  # fmt: skip

    def client_properties(self, user: str) -> str:
        return (
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{self.users[user]}";\n'
        )

    # -- internals ------------------------------------------------------------

    def _properties(self) -> str:
        assert self.folder is not None
        client = "SASL_PLAINTEXT" if self.secured else "PLAINTEXT"
        values = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"CLIENTS://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"CLIENTS://127.0.0.1:{self.port}",
            "listener.security.protocol.map": f"CLIENTS:{client},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "CLIENTS",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.folder / "log"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Like production's compose file: a context's topic keeps every event.
            "log.retention.ms": "-1",
            "log.retention.bytes": "-1",
            # Tests make hundreds of small topics: small segments and indexes.
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
        }
        if self.secured:
            values |= {
                "sasl.enabled.mechanisms": "SCRAM-SHA-256",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
                "listener.name.clients.scram-sha-256.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{ADMIN_USER}" password="{self.users[ADMIN_USER]}";'
                ),
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": f"User:{ADMIN_USER};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": "false",
            }
        values |= self.extra
        return "".join(f"{key}={value}\n" for key, value in values.items())

    def _scram_arguments(self) -> list[str]:
        arguments: list[str] = []
        for user, password in self.users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        return arguments

    def _command(self, jar_dir: Path, main: str, *arguments: str) -> list[str]:
        assert self.folder is not None
        return [
            "java", *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
            "-cp", f"{jar_dir}/*", main, *arguments,
        ]  # fmt: skip

    def _java(self, jar_dir: Path, main: str, *arguments: str, check: bool) -> None:
        done = subprocess.run(
            self._command(jar_dir, main, *arguments), capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{main} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def _wait_until_answering(self) -> None:
        """Until a metadata request gets an answer (a listening socket is not enough:
        the broker accepts connections before it has joined its own quorum)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited at start: {self._log_tail()}")
            if _answers_metadata(self.bootstrap):
                return
            time.sleep(0.3)
        raise TimeoutError(f"Apache Kafka did not answer in {START_TIMEOUT}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        assert self.folder is not None
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text(errors="replace")[-3000:]
        return ""


def _answers_metadata(bootstrap: str) -> bool:
    """One Metadata request over a raw socket (no client library, works with SASL too:
    an unauthenticated client gets an answer or a closed socket, never a hang).

    Without SASL the broker answers; with it, it closes the connection, and a
    second probe through ApiVersions tells that it is up."""
    import socket
    import struct

    host, _, port = bootstrap.rpartition(":")
    # ApiVersions v0: api_key 18, version 0, correlation 1, client id "probe".
    client = b"probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(4)
            if len(header) < 4:
                return False
            size = struct.unpack(">i", header)[0]
            answer = b""
            while len(answer) < size:
                chunk = sock.recv(size - len(answer))
                if not chunk:
                    return False
                answer += chunk
            # correlation id, then error code 0
            return struct.unpack(">ih", answer[:6]) == (1, 0)
    except OSError:
        return False


@contextlib.contextmanager
def running_apache_kafka(**options: object) -> Iterator[ApacheKafka]:
    with ApacheKafka(**options) as broker:  # type: ignore[arg-type]
        yield broker


def main(argv: list[str]) -> int:
    if argv[:1] == ["--fetch"]:
        print(jars())
        return 0
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with ApacheKafka() as broker:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_IMPL": "apache"}
        print(f"devtools.apache_kafka: Apache Kafka {broker.kafka_version} at {broker.bootstrap}",
              file=sys.stderr)  # fmt: skip
        child = subprocess.Popen(argv, env=env)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return child.wait()
        finally:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
