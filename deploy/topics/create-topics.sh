#!/usr/bin/env bash
# Creates tracepipe's topics on a Kafka cluster, idempotently (existing topics are left as they are, and said so).
# Run once per cluster before the stages start: by deploy/compose (service "topics") and the Kubernetes Job
# "tracepipe-topics" (deploy/k8s), with the apache/kafka image's kafka-topics.sh. Replication factor 3 and
# min.insync.replicas 2: with acks=all every acknowledged message is on at least 2 brokers, and one broker may be
# down without stopping producers. Partitions bound the useful instances of each stage (docs/operations.md).
#
# Environment (defaults in brackets):
#   BOOTSTRAP              Kafka bootstrap servers [kafka:9092]
#   KAFKA_BIN              directory of kafka-topics.sh [/opt/kafka/bin]
#   REPLICATION_FACTOR     [3]           MIN_INSYNC_REPLICAS   [2]
#   SPANS_TOPIC            [jaeger-spans]          SPANS_PARTITIONS    [12]
#   TRACES_TOPIC           [tracepipe-traces]      TRACES_PARTITIONS   [12]
#   PARTIALS_TOPIC         [tracepipe-partials]    PARTIALS_PARTITIONS [8]  (never change it later: docs/aggregator.md)
#   INGESTER_DLQ_TOPIC     [tracepipe-ingester-dlq]   STORE_DLQ_TOPIC [tracepipe-store-dlq]   DLQ_PARTITIONS [3]
#   RETENTION_MS           [604800000 = 7 days]: how far back a replay or a new consumer group can go
#   DLQ_RETENTION_MS       [2592000000 = 30 days]
#   WAIT_SECONDS           how long to wait for the cluster to answer [300]
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
RF=${REPLICATION_FACTOR:-3}
MIN_ISR=${MIN_INSYNC_REPLICAS:-2}
RETENTION_MS=${RETENTION_MS:-604800000}
DLQ_RETENTION_MS=${DLQ_RETENTION_MS:-2592000000}
WAIT_SECONDS=${WAIT_SECONDS:-300}

topics() { "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "$@"; }

deadline=$((SECONDS + WAIT_SECONDS))
until topics --list >/dev/null 2>&1; do
	if ((SECONDS >= deadline)); then
		echo "create-topics: no answer from $BOOTSTRAP after ${WAIT_SECONDS}s" >&2
		exit 1
	fi
	echo "create-topics: waiting for $BOOTSTRAP"
	sleep 3
done

# create NAME PARTITIONS RETENTION_MS
create() {
	topics --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor "$RF" \
		--config min.insync.replicas="$MIN_ISR" --config retention.ms="$3" --config cleanup.policy=delete
	topics --describe --topic "$1" | head -n 1
}

create "${SPANS_TOPIC:-jaeger-spans}" "${SPANS_PARTITIONS:-12}" "$RETENTION_MS"
create "${TRACES_TOPIC:-tracepipe-traces}" "${TRACES_PARTITIONS:-12}" "$RETENTION_MS"
create "${PARTIALS_TOPIC:-tracepipe-partials}" "${PARTIALS_PARTITIONS:-8}" "$RETENTION_MS"
create "${INGESTER_DLQ_TOPIC:-tracepipe-ingester-dlq}" "${DLQ_PARTITIONS:-3}" "$DLQ_RETENTION_MS"
create "${STORE_DLQ_TOPIC:-tracepipe-store-dlq}" "${DLQ_PARTITIONS:-3}" "$DLQ_RETENTION_MS"
echo "create-topics: done"
