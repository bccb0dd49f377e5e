#!/bin/bash
# TLS for the compose stack's Kafka, made once per kafka-tls volume: tls.sh DIR.
#
# A CA is made, signs the broker's certificate (names kafka and localhost, the addresses
# the broker advertises; for TLS servers only), and its private key is deleted at once:
# nothing else can ever be signed with it. DIR then holds
#   ca.crt           the CA's certificate, world-readable: what the services trust
#                    (KAFKA_SSL_CAFILE) and the broker's truststore (PEM);
#   broker.p12       the broker's key and certificate chain (PKCS12), owner-only;
#   broker.password  the keystore's random password, owner-only.
# A DIR that has broker.p12 is left as it is (a restart keeps the certificate).
set -euo pipefail

tls="${1:?usage: tls.sh DIR}"
[ -s "$tls/broker.p12" ] && exit 0
keytool=$(command -v keytool || echo "${JAVA_HOME:?}/bin/keytool")
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the CA's private key with it
password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
"$keytool" -genkeypair -alias ca -keyalg EC -groupname secp256r1 -validity 3650 \
    -dname "CN=provider-backoffice kafka CA" -ext bc:c -keystore "$work/ca.p12" \
    -storetype PKCS12 -storepass "$password"
"$keytool" -exportcert -rfc -alias ca -keystore "$work/ca.p12" -storepass "$password" \
    -file "$work/ca.crt"
"$keytool" -genkeypair -alias kafka -keyalg EC -groupname secp256r1 -validity 825 \
    -dname "CN=kafka" -keystore "$work/broker.p12" -storetype PKCS12 -storepass "$password"
"$keytool" -certreq -alias kafka -keystore "$work/broker.p12" -storepass "$password" \
    | "$keytool" -gencert -alias ca -keystore "$work/ca.p12" -storepass "$password" \
        -ext SAN=dns:kafka,dns:localhost,ip:127.0.0.1 -ext EKU=serverAuth -validity 825 \
        -rfc > "$work/kafka.crt"
"$keytool" -importcert -noprompt -alias ca -file "$work/ca.crt" \
    -keystore "$work/broker.p12" -storepass "$password"
"$keytool" -importcert -noprompt -alias kafka -file "$work/kafka.crt" \
    -keystore "$work/broker.p12" -storepass "$password"
mkdir -p "$tls"
printf '%s' "$password" > "$tls/broker.password"
install -m 0644 "$work/ca.crt" "$tls/ca.crt"
mv "$work/broker.p12" "$tls/broker.p12"  # last: its presence means "done"
