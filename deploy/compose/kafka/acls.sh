#!/bin/bash
# The services' ACLs on the compose stack's Kafka (run once the broker is healthy; adding
# an ACL that exists changes nothing). Each service, as its own SCRAM user:
#   * reads, describes and may create every context's topic (a consumer makes the topics
#     it reads when they do not exist yet; creating is not writing);
#   * writes only its own context's topic: only identity produces to identity.events;
#   * uses the consumer groups named after it (<service>.inbound, notifier.stream).
set -euo pipefail

acls() {
    /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 \
        --command-config /tmp/admin.properties --add "$@"
}
cat > /tmp/admin.properties <<PROPERTIES
security.protocol=SASL_SSL
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/secrets/ca.crt
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD:?}";
PROPERTIES

prefix="${TOPIC_PREFIX:-}"
services=(identity departments tickets clients notifier)
everyone=()
topics=()
for service in "${services[@]}"; do
    everyone+=(--allow-principal "User:${service}")
    topics+=(--topic "${prefix}${service}.events")
done
acls "${everyone[@]}" --operation Read --operation Describe --operation DescribeConfigs \
    --operation Create "${topics[@]}"
for service in "${services[@]}"; do
    acls --allow-principal "User:${service}" --operation Write --topic "${prefix}${service}.events"
    acls --allow-principal "User:${service}" --operation Read --operation Describe \
        --group "${prefix}${service}." --resource-pattern-type prefixed
done
echo "kafka ACLs in place"
