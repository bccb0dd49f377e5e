"""Write deploy/base/<service>.yaml: Deployment, Service, PodDisruptionBudget (and HPA).

The five services and the console differ only in name, port, a few environment variables and
whether they scale out, so their manifests come from one pattern here instead
of five hand-kept copies. Run it after changing the pattern and commit the output:

    .venv/bin/python deploy/generate.py          # rewrite the files
    .venv/bin/python deploy/generate.py --check  # exit 1 if a file is out of date

tests/test_deployment_files.py runs the --check. Standard library only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

BASE = Path(__file__).resolve().parent / "base"
IMAGE = "provider-backoffice"  # the overlays' `images:` set registry and tag
CONFIG_MAP = "backoffice-config"
SECRET = "backoffice-secrets"
KAFKA_CA_SECRET = "backoffice-kafka-ca"  # ca.crt: the CA that signed the brokers' certificates
UID = 10001  # the image's `app` user (Dockerfile)


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    scales: bool = True  # stateless API behind an HPA; False: exactly one replica
    secret_env: dict[str, str] = field(default_factory=dict)  # env name -> Secret key
    optional_secret_env: dict[str, str] = field(default_factory=dict)
    read_model: bool = True  # False: keeps no data (the console)
    kafka: bool = True  # False: never talks to the broker (the console: HTTP only)
    keys: bool = True  # False: signs and verifies nothing (the console)

    @property
    def read_model_key(self) -> str:
        return f"{self.name.upper()}_READ_MODEL_URL"

    @property
    def kafka_password_key(self) -> str:
        return f"{self.name.upper()}_KAFKA_PASSWORD"


SERVICES = [
    # Identity alone gets the private key that signs user tokens and its facts.
    Service(
        "identity",
        8001,
        secret_env={
            "ADMIN_PASSWORD": "ADMIN_PASSWORD",
            "IDENTITY_SIGNING_KEY": "IDENTITY_SIGNING_KEY",
        },
    ),
    Service("departments", 8002),
    Service("tickets", 8003),
    Service("clients", 8004),
    # Runs timers (escalations, reminders): one replica, never two during a rollout.
    Service(
        "notifier",
        8005,
        scales=False,
        optional_secret_env={
            "SMS_GATEWAY_URL": "SMS_GATEWAY_URL",
            "SMS_GATEWAY_TOKEN": "SMS_GATEWAY_TOKEN",
            "SMTP_USERNAME": "SMTP_USERNAME",
            "SMTP_PASSWORD": "SMTP_PASSWORD",
        },
    ),
    # The browser UI over the five APIs: no store, no read model, no key; seals its
    # session cookies with its own CONSOLE_SECRET (the same for every replica).
    Service(
        "console",
        8000,
        read_model=False,
        kafka=False,
        keys=False,
        secret_env={"CONSOLE_SECRET": "CONSOLE_SECRET"},
    ),
]


def _secret_ref(env: str, key: str, optional: bool = False) -> str:
    extra = "\n                  optional: true" if optional else ""
    return f"""            - name: {env}
              valueFrom:
                secretKeyRef:
                  name: {SECRET}
                  key: {key}{extra}
"""


def render(s: Service) -> str:
    """The manifests of one service, as the YAML text written to deploy/base."""
    env = ""
    if s.keys:
        # Ed25519 (``python -m shared.cli keys``): identity's public key, this service's
        # own private key, and every service's public key (who may call it).
        env += _secret_ref("IDENTITY_PUBLIC_KEY", "IDENTITY_PUBLIC_KEY")
        env += _secret_ref("SERVICE_SIGNING_KEY", f"{s.name.upper()}_SERVICE_KEY")
        env += _secret_ref("SERVICE_PUBLIC_KEYS", "SERVICE_PUBLIC_KEYS")
    if s.read_model:
        env += _secret_ref("READ_MODEL_URL", s.read_model_key)
    env += "".join(_secret_ref(e, k) for e, k in s.secret_env.items())
    env += "".join(_secret_ref(e, k, optional=True) for e, k in s.optional_secret_env.items())
    # Kafka (SASL_SSL, SCRAM: the ConfigMap): each service is its own Kafka user, so
    # the brokers' ACLs can let only identity write identity.events.
    if s.kafka:
        env += f"""            - name: KAFKA_SASL_USERNAME
              value: {s.name}
""" + _secret_ref("KAFKA_SASL_PASSWORD", s.kafka_password_key)
    kafka_ca_mount = (
        """            - name: kafka-ca
              mountPath: /etc/kafka-ca
              readOnly: true
"""
        if s.kafka
        else ""
    )
    kafka_ca_volume = (
        f"""        - name: kafka-ca
          secret:
            secretName: {KAFKA_CA_SECRET}
"""
        if s.kafka
        else ""
    )
    if s.scales:
        # No spec.replicas: the HorizontalPodAutoscaler owns the count (an applied
        # replicas field would reset it on every `kubectl apply`).
        replicas = ""
        strategy = """  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0"""
        component = "api"
    else:
        replicas = "  replicas: 1\n"
        strategy = """  strategy:
    # Stop the old pod before the new one starts: its timers must never run twice.
    type: Recreate"""
        component = "worker"
    text = f"""# Generated by deploy/generate.py; edit the pattern there, not this file.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {s.name}
  labels:
    app.kubernetes.io/name: {s.name}
    app.kubernetes.io/component: {component}
spec:
{replicas}  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: {s.name}
{strategy}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {s.name}
        app.kubernetes.io/component: {component}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{s.port}"
        prometheus.io/path: /metrics
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: {UID}
        runAsGroup: {UID}
        fsGroup: {UID}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {s.name}
          image: {IMAGE}
          command: ["python", "-m", "services.{s.name}"]
          ports:
            - name: http
              containerPort: {s.port}
          envFrom:
            - configMapRef:
                name: {CONFIG_MAP}
          env:
            - name: SERVICE
              value: {s.name}
            - name: SERVICE_PORT
              value: "{s.port}"
{env}          startupProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /ready
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          resources:
            requests:
              cpu: 100m
              memory: 256Mi
            limits:
              cpu: "1"
              memory: 512Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: var
              mountPath: /app/var
            - name: tmp
              mountPath: /tmp
{kafka_ca_mount}      volumes:
        - name: var
          emptyDir: {{}}
        - name: tmp
          emptyDir: {{}}
{kafka_ca_volume}---
apiVersion: v1
kind: Service
metadata:
  name: {s.name}
  labels:
    app.kubernetes.io/name: {s.name}
spec:
  selector:
    app.kubernetes.io/name: {s.name}
  ports:
    - name: http
      port: {s.port}
      targetPort: http
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {s.name}
  labels:
    app.kubernetes.io/name: {s.name}
spec:
  # At most one pod down for a drain; never blocks a drain at one replica.
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {s.name}
"""
    if s.scales:
        text += f"""---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {s.name}
  labels:
    app.kubernetes.io/name: {s.name}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {s.name}
  minReplicas: 2
  maxReplicas: 6
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
"""
    return text


def outputs() -> dict[Path, str]:
    return {BASE / f"{s.name}.yaml": render(s) for s in SERVICES}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    for path in stale:
        print(f"out of date: {path} (run deploy/generate.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
