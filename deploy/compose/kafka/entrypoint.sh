#!/bin/bash
# Apache Kafka for docker-compose.yml: one KRaft node (broker and controller), every client
# over TLS with SASL/SCRAM-SHA-256 (SASL_SSL), every request authorized by ACLs (acls.sh
# adds the services').
#
# TLS: on the first start of the kafka-tls volume (/etc/kafka/secrets, the image's own
# secrets directory) a CA is made, signs the broker's certificate (kafka, localhost) and
# its private key is deleted: nothing else can be signed with it. The CA's certificate
# (ca.crt, world-readable) is what the services trust (KAFKA_SSL_CAFILE, the same volume
# mounted read-only); the broker's keystore and its password stay readable by Kafka only.
#
# The controller listener is PLAINTEXT on the container's loopback only: the broker in the
# same process is its one client (its principal, ANONYMOUS, is a super user there), and
# nothing else can reach it. The SCRAM credentials of the admin and the five services are
# written into the log when it is formatted (first start of the volume); a password
# changed later is changed with kafka-configs.sh --alter --entity-type users.
set -euo pipefail

: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}"
tls=/etc/kafka/secrets
/bin/bash /opt/compose/tls.sh "$tls"  # once per volume: the CA and the broker's certificate
broker_password=$(cat "$tls/broker.password")
config=/opt/kafka/config/compose.properties
cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
controller.listener.names=CONTROLLER
listeners=INTERNAL://:9092,CONTROLLER://127.0.0.1:9093,EXTERNAL://:29092
advertised.listeners=INTERNAL://kafka:9092,EXTERNAL://localhost:${KAFKA_HOST_PORT:-29092}
listener.security.protocol.map=INTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT,EXTERNAL:SASL_SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=${tls}/broker.p12
ssl.keystore.password=${broker_password}
ssl.key.password=${broker_password}
ssl.truststore.type=PEM
ssl.truststore.location=${tls}/ca.crt
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.internal.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=3
log.retention.ms=-1
log.retention.bytes=-1
log.dirs=/var/lib/kafka/data
PROPERTIES

# For the healthcheck and operators' tools inside the container.
cat > /opt/kafka/config/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
ssl.truststore.type=PEM
ssl.truststore.location=${tls}/ca.crt
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
PROPERTIES

scram=(--add-scram "SCRAM-SHA-256=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]")
for service in identity departments tickets clients notifier; do
    variable="KAFKA_PASSWORD_${service^^}"
    scram+=(--add-scram "SCRAM-SHA-256=[name=${service},password=${!variable:?${variable} is not set}]")
done
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$config" "${scram[@]}"
exec /opt/kafka/bin/kafka-server-start.sh "$config"
