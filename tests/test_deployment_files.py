"""The production set-ups, checked by construction (no Docker engine or cluster here).

* ``docker-compose.yml``: the five services with what the code needs to run in a
  container, Kafka in KRaft mode, EventStoreDB, PostgreSQL, Mailpit, volumes;
* ``Dockerfile`` and ``.dockerignore``;
* ``deploy/``: the kustomize base (probes, resources, ConfigMap, Secret references,
  PDBs, HPAs) and overlays; rendered with ``kubectl kustomize`` when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools import apache_kafka
from services.clients.settings import ClientsSettings
from services.console.settings import ConsoleSettings
from services.notifier.settings import NotifierSettings
from services.tickets.settings import TicketsSettings
from shared import catalogue
from shared.runtime.settings import ServiceSettings

yaml = pytest.importorskip("yaml", reason="PyYAML (a [dev] dependency) is not installed")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = DEPLOY / "overlays"
SERVICES = catalogue.names()  # identity, departments, tickets, clients, notifier
# The console is deployed beside them but keeps no store and no read model.
DEPLOYED = (*SERVICES, "console")
SCALED = ("identity", "departments", "tickets", "clients", "console")  # the notifier runs timers
INFRASTRUCTURE = ("kafka", "eventstore", "postgres")
SECRET = "backoffice-secrets"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return [d for path in sorted(BASE.rglob("*.yaml")) for d in _documents(path.read_text())]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _container_settings() -> dict[str, str]:
    """Settings whose default breaks in a container, derived from ServiceSettings.

    A loopback address reaches only the container itself, an empty URL falls back
    to a SQLite file inside it, port 0 leaves the port to a default the published
    port may not match, and a missing key makes each container invent its own.
    """
    needed = {}
    for name, info in ServiceSettings.model_fields.items():
        default = info.default
        env = name.upper()
        if isinstance(default, str) and any(host in default for host in LOOPBACK):
            needed[env] = f"default {default!r} is the container itself"
        elif name.endswith("_url") and not default:
            needed[env] = "empty: a SQLite file inside the container"
        elif name.endswith("_port") and default == 0:
            needed[env] = "0: the per-service default, not necessarily the published port"
        elif name == "identity_signing_key":
            continue  # identity's alone: test_only_identity_holds_its_signing_key
        elif name.endswith(("_key", "_keys")):
            needed[env] = "unset: a key generated inside the container, trusted by no other"
        elif default is None and "SecretStr" in str(info.annotation):
            needed[env] = "None: each container would generate its own"
    return needed


def test_the_settings_a_container_must_be_given_are_derived_from_the_code() -> None:
    needed = _container_settings()
    assert {
        "EVENT_STORE_URL",
        "READ_MODEL_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "SERVICE_HOST",
        "SERVICE_PORT",
        "IDENTITY_PUBLIC_KEY",
        "SERVICE_SIGNING_KEY",
        "SERVICE_PUBLIC_KEYS",
    } <= set(needed), needed


# --- docker-compose.yml ------------------------------------------------------------


def test_compose_uses_the_compose_spec(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no version key"
    assert "x-service" in compose, "the common service block is the x-service anchor"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_builds_and_runs_each_service(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    port = catalogue.default_ports()[name]
    assert service["build"]["context"] == "."
    assert service["build"]["args"]["SERVICE"] == name
    published = [str(p) for p in service["ports"]]
    assert any(re.fullmatch(rf"(\$\{{\w+:-{port}\}}|{port}):{port}", p) for p in published), (
        published
    )
    assert service["healthcheck"]["test"], "a healthcheck"
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service.get("restart") in ("unless-stopped", "always", "on-failure")
    depends = service["depends_on"]
    for dependency in INFRASTRUCTURE:
        assert depends[dependency]["condition"] == "service_healthy", (name, dependency)


@pytest.mark.parametrize("name", SERVICES)
def test_compose_gives_each_service_what_the_code_needs(compose: dict[str, Any], name: str) -> None:
    env = _environment(compose["services"][name])
    missing = {var: why for var, why in _container_settings().items() if not env.get(var)}
    assert not missing, f"{name} lacks {missing}"
    assert env["SERVICE_HOST"] == "0.0.0.0"
    assert env["SERVICE_PORT"] == str(catalogue.default_ports()[name])
    store = urlsplit(env["EVENT_STORE_URL"])
    assert (store.scheme, store.hostname, store.port) == ("esdb", "eventstore", 2113)
    assert "tls=false" in store.query.lower()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    read = urlsplit(env["READ_MODEL_URL"])
    assert (read.scheme, read.hostname, read.port, read.path) == (
        "postgresql",
        "postgres",
        5432,
        f"/{name}",
    )
    assert env["LOG_FORMAT"] == "json"


def test_compose_notifier_mails_through_mailpit(compose: dict[str, Any]) -> None:
    mailpit = compose["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert any(str(p).endswith(":8025") for p in mailpit["ports"])
    assert mailpit["healthcheck"]["test"]
    notifier = compose["services"]["notifier"]
    env = _environment(notifier)
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mailpit", "1025")
    assert "SMS_GATEWAY_URL" in env
    assert notifier["depends_on"]["mailpit"]["condition"] == "service_healthy"


def _compose_kafka_properties() -> dict[str, str]:
    """The server properties deploy/compose/kafka/entrypoint.sh writes for the broker."""
    script = (DEPLOY / "compose" / "kafka" / "entrypoint.sh").read_text()
    body = script.split("<<PROPERTIES\n", 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def test_compose_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert not [n for n, s in services.items() if "zookeeper" in f"{n} {s.get('image', '')}"]
    kafka = services["kafka"]
    # The version `make test-kafka` runs the suite against (devtools/apache_kafka.py).
    assert kafka["image"] == f"apache/kafka:{apache_kafka.VERSION}"
    assert kafka["entrypoint"] == ["/bin/bash", "/opt/compose/entrypoint.sh"]
    assert "./deploy/compose/kafka:/opt/compose:ro" in kafka["volumes"]
    properties = _compose_kafka_properties()
    assert {"broker", "controller"} <= set(properties["process.roles"].split(","))
    assert properties["node.id"] == "1"
    # The controller listens on the container's loopback only: nobody else reaches it.
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert "CONTROLLER://127.0.0.1:9093" in properties["listeners"].split(",")
    assert "INTERNAL://kafka:9092" in properties["advertised.listeners"].split(",")
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["log.retention.ms"] == "-1"  # a topic never drops a context's history
    assert "/opt/kafka/bin/" in " ".join(kafka["healthcheck"]["test"])


def test_compose_kafka_wants_credentials_and_acls(compose: dict[str, Any]) -> None:
    """Every client listener is SASL/SCRAM, requests are authorized, each service connects
    as its own user, and only a context's own service may write its topic."""
    properties = _compose_kafka_properties()
    protocols = dict(p.split(":") for p in properties["listener.security.protocol.map"].split(","))
    assert {name: protocols[name] for name in ("INTERNAL", "EXTERNAL")} == {
        "INTERNAL": "SASL_SSL",
        "EXTERNAL": "SASL_SSL",
    }
    # TLS: the broker's own keystore, the CA it made, in the volume the services mount.
    assert properties["ssl.keystore.location"] == "${tls}/broker.p12"
    assert properties["ssl.truststore.location"] == "${tls}/ca.crt"
    assert "kafka-tls:/etc/kafka/secrets" in compose["services"]["kafka"]["volumes"]
    assert "kafka-tls" in compose["volumes"]
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    kafka_env = _environment(compose["services"]["kafka"])
    acls = compose["services"]["kafka-acls"]
    assert acls["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = (DEPLOY / "compose" / "kafka" / "acls.sh").read_text()
    assert '--operation Write --topic "${prefix}${service}.events"' in script
    for name in SERVICES:
        service = compose["services"][name]
        assert service["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"
        env = _environment(service)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
        assert env["KAFKA_SSL_CAFILE"] == "/etc/kafka-tls/ca.crt"
        assert "kafka-tls:/etc/kafka-tls:ro" in [
            str(v).split("#")[0].strip() for v in service["volumes"]
        ]
        assert env["KAFKA_SASL_USERNAME"] == name
        variable = f"KAFKA_PASSWORD_{name.upper()}"
        assert env["KAFKA_SASL_PASSWORD"].startswith(f"${{{variable}:?")  # required
        assert kafka_env[variable].startswith(f"${{{variable}:?")  # the broker knows it


@pytest.mark.skipif(
    shutil.which("keytool") is None, reason="keytool (a JRE) makes the certificates"
)
def test_compose_kafka_tls_material_is_trusted_by_the_services_settings(tmp_path: Path) -> None:
    """deploy/compose/kafka/tls.sh, run as the broker's entrypoint runs it: the CA's key is
    gone, the keystore is owner-only, and a TLS server with the broker's key and chain is
    accepted by the services' own client settings (KAFKA_SSL_CAFILE) for the names the
    broker advertises, and refused for any other."""
    tls = tmp_path / "tls"
    script = DEPLOY / "compose" / "kafka" / "tls.sh"
    subprocess.run(["bash", str(script), str(tls)], check=True, capture_output=True, timeout=180)
    assert sorted(p.name for p in tls.iterdir()) == ["broker.p12", "broker.password", "ca.crt"]
    for private in ("broker.p12", "broker.password"):
        assert (tls / private).stat().st_mode & 0o077 == 0, private
    assert (tls / "ca.crt").stat().st_mode & 0o004, "the services (another user) read the CA"
    before = (tls / "broker.p12").read_bytes()
    subprocess.run(["bash", str(script), str(tls)], check=True, capture_output=True, timeout=60)
    assert (tls / "broker.p12").read_bytes() == before, "a restart keeps the certificate"

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from shared.messaging.kafka_clients import ClientConfig

    password = (tls / "broker.password").read_bytes()
    key, cert, _chain = pkcs12.load_key_and_certificates(
        (tls / "broker.p12").read_bytes(), password
    )
    assert key is not None and cert is not None
    pem = tmp_path / "broker.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem)
    client = ClientConfig(security_protocol="SASL_SSL", ssl_cafile=str(tls / "ca.crt"))
    context = client.ssl_context()
    assert context is not None

    def handshake(name: str) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError):
                server.wrap_socket(connection, server_side=True).close()
            connection.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=name),
            ):
                pass
        finally:
            thread.join(10)
            listener.close()

    for name in ("kafka", "localhost"):
        handshake(name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("eventstore")


def test_compose_eventstore_and_postgres(compose: dict[str, Any]) -> None:
    eventstore = compose["services"]["eventstore"]
    assert eventstore["image"] == "eventstore/eventstore:24.10"
    env = _environment(eventstore)
    assert env["EVENTSTORE_INSECURE"] == "true"
    assert env["EVENTSTORE_RUN_PROJECTIONS"] == "None"
    assert "2113/health/live" in " ".join(eventstore["healthcheck"]["test"])

    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert postgres["healthcheck"]["test"]
    init = [v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d" in v]
    assert init, "the init scripts are mounted"
    folder = ROOT / init[0].split(":")[0]
    assert folder.is_relative_to(DEPLOY / "compose"), folder
    sql = " ".join(p.read_text() for p in sorted(folder.glob("*.sql")))
    created = set(re.findall(r"CREATE DATABASE\s+(\w+)", sql, re.IGNORECASE))
    assert created == set(SERVICES)


def test_compose_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                used[source] = name
    assert set(used) <= declared, set(used) - declared
    for name in INFRASTRUCTURE:
        assert name in used.values(), f"{name} keeps its data in a named volume"


def test_env_example_documents_every_compose_variable() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}", text))
    assert {"POSTGRES_PASSWORD", "CONSOLE_SECRET", "ADMIN_PASSWORD"} <= variables
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert variables <= documented, variables - documented
    # No literal $ that Compose would try to interpolate by mistake.
    assert not re.findall(r"\$(?![{$])", text)


# --- Dockerfile -------------------------------------------------------------------


def test_dockerfile_one_image_for_every_service() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M) or re.search(
        r"^FROM python:3\.11-slim\b", text, re.M
    )
    assert "pip install --no-cache-dir ." in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and not [line for line in installs if "[" in line], "runtime deps only"
    assert re.search(r"^ARG SERVICE=", text, re.M)
    assert "services.${SERVICE}" in text
    assert re.search(r"^EXPOSE ", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*python.*/health", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # Exec form must be valid JSON, or Docker silently runs it as a shell string.
    joined = text.replace("\\\n", " ")
    exec_forms = re.findall(r"^(?:CMD|ENTRYPOINT|HEALTHCHECK .*?CMD)\s+(\[.*\])\s*$", joined, re.M)
    assert len(exec_forms) == 2, exec_forms
    for form in exec_forms:
        assert all(isinstance(arg, str) for arg in json.loads(form)), form
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", ".git", "**/__pycache__", ".env"} <= ignored


def test_every_python_package_is_installed_by_pip_install() -> None:
    """setuptools' find() only takes folders with __init__.py: others miss the image."""
    for top in ("shared", "services"):
        for folder in [ROOT / top, *(ROOT / top).rglob("*")]:
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), f"{folder} has no __init__.py"


# --- deploy/ (kustomize) -----------------------------------------------------------


def test_base_is_generated_from_the_pattern() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_base_kinds(base: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in base}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= kinds
    assert "Secret" not in kinds, "the Secret is created per cluster, not kept in git"
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(_by_kind(base, kind)) == set(DEPLOYED), kind
    hpas = _by_kind(base, "HorizontalPodAutoscaler")
    assert set(hpas) == set(SCALED), "an HPA per stateless API, none for the notifier"
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)


def test_base_kustomization_lists_every_file() -> None:
    kustomization = _load(BASE / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_base_configmap(base: list[dict[str, Any]]) -> None:
    (config,) = _by_kind(base, "ConfigMap").values()
    data = config["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values are strings"
    assert data["LOG_FORMAT"] == "json"
    assert urlsplit(data["EVENT_STORE_URL"]).scheme == "esdb"
    assert data["KAFKA_BOOTSTRAP_SERVERS"]
    assert data["SERVICE_HOST"] == "0.0.0.0"
    settings = {name.upper() for name in ServiceSettings.model_fields}
    settings |= {name.upper() for name in ClientsSettings.model_fields}
    settings |= {name.upper() for name in TicketsSettings.model_fields}
    settings |= {name.upper() for name in ConsoleSettings.model_fields}
    settings |= {name.upper() for name in NotifierSettings.model_fields}
    assert set(data) - {"SMTP_HOST", "SMTP_PORT"} <= settings, "only settings the code reads"


@pytest.mark.parametrize("name", SERVICES)
def test_base_deployment(base: list[dict[str, Any]], name: str) -> None:
    deployment = _by_kind(base, "Deployment")[name]
    ((config_name, config),) = _by_kind(base, "ConfigMap").items()
    port = catalogue.default_ports()[name]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", f"services.{name}"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert {"configMapRef": {"name": config_name}} in container["envFrom"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SERVICE_PORT"]["value"] == str(port)
    missing = set(_container_settings()) - set(env) - set(config["data"])
    assert not missing, f"{name} lacks {missing}"
    for secret in ("IDENTITY_PUBLIC_KEY", "SERVICE_SIGNING_KEY", "READ_MODEL_URL"):
        assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == SECRET
    assert pod["securityContext"]["runAsNonRoot"] is True

    service = _by_kind(base, "Service")[name]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == port
    pdb = _by_kind(base, "PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if name in SCALED:
        assert "replicas" not in spec, "the HPA owns the replica count"
    else:
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate", "never two notifiers at once"


@pytest.mark.parametrize("name", SERVICES)
def test_base_deployment_connects_to_kafka_as_its_own_user(
    base: list[dict[str, Any]], name: str
) -> None:
    ((_, config),) = _by_kind(base, "ConfigMap").items()
    data = config["data"]
    assert (data["KAFKA_SECURITY_PROTOCOL"], data["KAFKA_SASL_MECHANISM"]) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert data["KAFKA_IMPL"] == "apache"
    pod = _by_kind(base, "Deployment")[name]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKA_SASL_USERNAME"]["value"] == name
    password = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": SECRET, "key": f"{name.upper()}_KAFKA_PASSWORD"}
    # The CA file the ConfigMap names is where the CA Secret is mounted.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    ca_dir = mounts["kafka-ca"]
    assert data["KAFKA_SSL_CAFILE"] == f"{ca_dir}/ca.crt"
    assert volumes["kafka-ca"]["secret"]["secretName"] == "backoffice-kafka-ca"


def test_only_identity_holds_its_signing_key_and_each_service_its_own(
    compose: dict[str, Any], base: list[dict[str, Any]]
) -> None:
    """No key is shared: identity's private key goes to identity alone, and each
    service's own key (its service tokens) to that service alone, in both set-ups."""
    declared = compose["secrets"]
    own: dict[str, str] = {}
    for name in SERVICES:
        service = compose["services"][name]
        env = _environment(service)
        mounted = {m["target"]: m["source"] for m in service["secrets"]}
        assert env["IDENTITY_PUBLIC_KEY"] == "/run/secrets/identity.pub"
        assert mounted["identity.pub"] == "identity_public_key"
        assert env["SERVICE_SIGNING_KEY"] == "/run/secrets/service.key"
        own[name] = declared[mounted["service.key"]]["file"]
        callers = json.loads(env["SERVICE_PUBLIC_KEYS"])
        assert set(callers) == set(SERVICES)
        for caller, path in callers.items():
            source = mounted[path.removeprefix("/run/secrets/")]
            assert declared[source]["file"].endswith(f"/services/{caller}.pub")
        holds_identity_key = "identity_signing_key" in mounted.values()
        assert holds_identity_key == (name == "identity"), name
        assert ("IDENTITY_SIGNING_KEY" in env) == (name == "identity"), name
    assert len(set(own.values())) == len(SERVICES), own
    assert all(path.endswith(f"/services/{name}.key") for name, path in own.items())

    k8s_own = {}
    for name, deployment in _by_kind(base, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert ("IDENTITY_SIGNING_KEY" in env) == (name == "identity"), name
        if name == "console":
            continue
        ref = env["SERVICE_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET
        k8s_own[name] = ref["key"]
        for public in ("IDENTITY_PUBLIC_KEY", "SERVICE_PUBLIC_KEYS"):
            assert env[public]["valueFrom"]["secretKeyRef"]["key"] == public
    assert len(set(k8s_own.values())) == len(SERVICES), k8s_own
    assert "IDENTITY_SIGNING_KEY" not in k8s_own.values()


def test_the_console_is_composed_and_deployed_with_the_apis_it_calls(
    compose: dict[str, Any], base: list[dict[str, Any]]
) -> None:
    apis = {
        f"{name.upper()}_URL": f"http://{name}:{port}"
        for name, port in catalogue.default_ports().items()
    }
    console = compose["services"]["console"]
    assert console["build"]["args"]["SERVICE"] == "console"
    assert "${CONSOLE_PORT:-8000}:8000" in console["ports"]
    env = _environment(console)
    assert {k: env.get(k) for k in apis} == apis
    assert env["SERVICE_PORT"] == "8000" and env["SERVICE_HOST"] == "0.0.0.0"
    assert env["CONSOLE_SECRET"] and "READ_MODEL_URL" not in env and "EVENT_STORE_URL" not in env
    assert not {k for k in env if k.endswith(("_KEY", "_KEYS"))}, "the console holds no key"
    assert "/health" in " ".join(console["healthcheck"]["test"])
    assert ConsoleSettings(service_port=8000).console_port == 8000  # type: ignore[call-arg]

    deployment = _by_kind(base, "Deployment")["console"]
    ((_, config),) = _by_kind(base, "ConfigMap").items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.console"]
    assert [p["containerPort"] for p in container["ports"]] == [8000]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    pod_env = {e["name"]: e for e in container["env"]}
    assert pod_env["CONSOLE_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == SECRET
    assert not {k for k in pod_env if k.endswith(("_KEY", "_KEYS"))}, "the console holds no key"
    assert "READ_MODEL_URL" not in pod_env
    assert {k: config["data"].get(k) for k in apis} == apis


def test_deploy_readme_names_every_secret_key(base: list[dict[str, Any]]) -> None:
    keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for d in _by_kind(base, "Deployment").values()
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    readme = (DEPLOY / "README.md").read_text()
    assert SECRET in readme
    assert not [k for k in keys if f"`{k}`" not in readme]
    assert "kubectl kustomize deploy/overlays/prod" in readme


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_build_on_the_base(overlay: str) -> None:
    kustomization = _load(OVERLAYS / overlay / "kustomization.yaml")
    assert "../../base" in kustomization["resources"]
    (image,) = kustomization["images"]
    assert image["name"] == "provider-backoffice"
    if overlay == "dev":
        assert image["newTag"] == "dev"
    else:
        assert re.fullmatch(r"\d+\.\d+\.\d+", str(image["newTag"])), "prod pins a version"


KUSTOMIZE = shutil.which("kubectl") or shutil.which("kustomize")


@pytest.mark.skipif(KUSTOMIZE is None, reason="neither kubectl nor kustomize is on PATH")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render(overlay: str) -> None:
    assert KUSTOMIZE is not None
    verb = "kustomize" if Path(KUSTOMIZE).name == "kubectl" else "build"
    rendered = subprocess.run(
        [KUSTOMIZE, verb, str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = _documents(rendered.stdout)
    deployments = _by_kind(docs, "Deployment")
    assert set(deployments) == set(DEPLOYED)
    hpas = _by_kind(docs, "HorizontalPodAutoscaler")
    for deployment in deployments.values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        tag = container["image"].rpartition(":")[2]
        assert tag == ("dev" if overlay == "dev" else "0.1.0"), container["image"]
        assert deployment["metadata"]["namespace"]
    assert deployments["notifier"]["spec"]["replicas"] == 1
    if overlay == "dev":
        assert not hpas
        assert all(d["spec"]["replicas"] == 1 for d in deployments.values())
    else:
        assert set(hpas) == set(SCALED)
        assert all(h["spec"]["minReplicas"] > 1 for h in hpas.values())
