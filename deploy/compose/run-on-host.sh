#!/usr/bin/env bash
# Runs the stages of compose.yaml as plain processes on this host, for a machine without a container engine: the
# same command lines (hostnames -> 127.0.0.1, ports moved off the defaults, topic, group and index names prefixed so
# that shared services are not disturbed), each binary as uid 65532 like the images, against a Kafka and an
# Elasticsearch/OpenSearch you already run (deploy/local/services.sh). Then a workload with known truth:
#
#   bash deploy/docker/build-check.sh /tmp/tp-bin                    # the images' binaries, static
#   bash deploy/compose/run-on-host.sh start /tmp/tp-bin             # prints PREFIX and the addresses
#   bash deploy/compose/run-on-host.sh check                         # waits, compares stored traces/spans with the truth
#   bash deploy/compose/run-on-host.sh stop                          # SIGTERM, waits; prints each group's lag
#
# Environment: KAFKA (127.0.0.1:9092), ES (http://127.0.0.1:9200), KAFKA_LIB (directory of the Kafka jars, for
# kafka-topics and kafka-consumer-groups; default the one deploy/local/services.sh installs), RUN_DIR (logs, pids).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KAFKA=${KAFKA:-127.0.0.1:9092}
ES=${ES:-http://127.0.0.1:9200}
KAFKA_LIB=${KAFKA_LIB:-/tmp/tracepipe-services/kafka/lib}
RUN_DIR=${RUN_DIR:-/tmp/tracepipe-run-on-host}
mkdir -p "$RUN_DIR"
cd "$RUN_DIR"

kafka_tool() { java -Xmx128m -Dlog4j.configuration="file:$HERE/../local/kafka/tools-log4j.properties" -cp "$KAFKA_LIB/*" "$@"; }

start() {
	local bin=${1:?usage: run-on-host.sh start BINDIR}
	local P=tp$RANDOM
	echo "$P" >prefix
	echo "$bin" >bindir
	# kafka-topics.sh for create-topics.sh, from the jars.
	mkdir -p kbin
	printf '#!/usr/bin/env bash\nexec java -Xmx128m -Dlog4j.configuration=file:%s -cp "%s/*" org.apache.kafka.tools.TopicCommand "$@"\n' \
		"$HERE/../local/kafka/tools-log4j.properties" "$KAFKA_LIB" >kbin/kafka-topics.sh
	chmod +x kbin/kafka-topics.sh
	KAFKA_BIN=$RUN_DIR/kbin BOOTSTRAP=$KAFKA REPLICATION_FACTOR=${REPLICATION_FACTOR:-1} MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-1} \
		SPANS_TOPIC=$P-spans TRACES_TOPIC=$P-traces PARTIALS_TOPIC=$P-partials INGESTER_DLQ_TOPIC=$P-idlq \
		STORE_DLQ_TOPIC=$P-sdlq WAIT_SECONDS=60 bash "$HERE/../topics/create-topics.sh" >topics.log 2>&1
	run() {
		local name=$1
		shift
		env -i setpriv --reuid=65532 --regid=65532 --clear-groups "$@" >"$name.log" 2>&1 &
		echo $! >"$name.pid"
	}
	run collector "$bin/collector" --kafka-brokers="$KAFKA" --spans-topic="$P-spans" --otlp-grpc=127.0.0.1:24417 \
		--otlp-http=127.0.0.1:24418 --jaeger-http=127.0.0.1:24468 --jaeger-compact-udp=127.0.0.1:26931 \
		--jaeger-binary-udp=127.0.0.1:26932 --sampling-http=127.0.0.1:25778 --metrics-addr=127.0.0.1:24469
	local i
	for i in 1 2; do
		run "ingester-$i" "$bin/ingester" --kafka-brokers="$KAFKA" --spans-topic="$P-spans" --traces-topic="$P-traces" \
			--group="$P-ingester" --encoding=auto --max-bytes-in-flight=536870912 --dlq-topic="$P-idlq" \
			--metrics-addr="127.0.0.1:2946$i"
		run "aggregator-$i" "$bin/aggregator" --kafka-brokers="$KAFKA" --traces-topic="$P-traces" \
			--partials-topic="$P-partials" --es-url="$ES" --index-prefix="$P" --group="$P-agg" --reduce-group="$P-agg-reduce" \
			--store-dlq-topic="$P-sdlq" --index-traces=false --dimensions=shard,host,client --metrics-addr="127.0.0.1:2947$i"
	done
	run indexer "$bin/indexer" --kafka-brokers="$KAFKA" --traces-topic="$P-traces" --group="$P-indexer" --es-url="$ES" \
		--index-prefix="$P" --store-dlq-topic="$P-sdlq" --metrics-addr=127.0.0.1:29466
	run query "$bin/tracepipe" query serve --listen=127.0.0.1:26689 --es-url="$ES" --index-prefix="$P"
	echo "prefix $P; collector OTLP/HTTP 127.0.0.1:24418, query http://127.0.0.1:26689/, logs in $RUN_DIR"
}

healthz() {
	local p code
	for p in 24469 29461 29462 29471 29472 29466 26689; do
		code=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$p/healthz" || true)
		echo "  /healthz on :$p -> $code"
		[ "$code" = 200 ] || return 1
	done
}

check() {
	local P bin
	P=$(cat prefix)
	bin=$(cat bindir)
	local deadline=$((SECONDS + 120))
	until healthz >/dev/null; do
		((SECONDS < deadline)) || { healthz || true; echo "stages not healthy"; return 1; }
		sleep 2
	done
	healthz
	"$bin/tracepipe" gen --kafka-brokers "$KAFKA" --spans-topic "$P-spans" --traces 2000 --slow inventory:Reserve:20 \
		--start "$(date -u -d '-10 min' +%FT%TZ)" --interval 250ms --truth truth.json
	# One OTLP/JSON request of 2 spans through the collector.
	local tid now
	tid=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	now=$(date +%s%N)
	printf '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"1111111111111111","name":"POST /checkout","kind":2,"startTimeUnixNano":"%s","endTimeUnixNano":"%s"},{"traceId":"%s","spanId":"2222222222222222","parentSpanId":"1111111111111111","name":"SELECT cart","kind":3,"startTimeUnixNano":"%s","endTimeUnixNano":"%s"}]}]}]}' \
		"$tid" $((now - 120000000)) "$now" "$tid" $((now - 100000000)) $((now - 10000000)) >span.json
	curl -sf -X POST -H 'Content-Type: application/json' --data @span.json http://127.0.0.1:24418/v1/traces >/dev/null
	local want_traces want_spans traces spans
	want_traces=$(($(python3 -c 'import json; print(json.load(open("truth.json"))["traces"])') + 1))
	want_spans=$(($(python3 -c 'import json; print(json.load(open("truth.json"))["spans"])') + 2))
	deadline=$((SECONDS + 300))
	while :; do
		curl -s -X POST "$ES/$P-*/_refresh" >/dev/null
		traces=$(curl -s "$ES/$P-tracepipe-traces-*/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
		spans=$(curl -s "$ES/$P-jaeger-span-*/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
		[ "$traces" = "$want_traces" ] && [ "$spans" = "$want_spans" ] && break
		((SECONDS < deadline)) || { echo "stored $traces traces, $spans spans; want $want_traces, $want_spans"; return 1; }
		sleep 5
	done
	echo "stored $traces traces and $spans spans: every one, once (truth + the collector's request)"
	curl -sf "http://127.0.0.1:26689/api/v1/traces/$tid" >/dev/null && echo "the collector's trace $tid is served by the query API"
	"$bin/tracepipe" query bottlenecks --es-url "$ES" --index-prefix "$P" --since 1h --limit 3
}

stop() {
	local f P
	P=$(cat prefix)
	for f in *.pid; do kill -TERM "$(cat "$f")" 2>/dev/null || true; done
	for f in *.pid; do
		while kill -0 "$(cat "$f")" 2>/dev/null; do sleep 1; done
		echo "  ${f%.pid}: $(tail -n 1 "${f%.pid}.log" | cut -c1-120)"
		rm -f "$f"
	done
	local g
	for g in "$P-ingester" "$P-indexer" "$P-agg" "$P-agg-reduce"; do
		kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$KAFKA" --describe --group "$g" 2>/dev/null |
			awk -v g="$g" 'NR > 2 && $6 ~ /^[0-9]+$/ { s += $6; n++ } END { printf "  group %s: %d partitions, lag %d (kafka-consumer-groups)\n", g, n, s }'
	done
	if [ "${KEEP:-}" != 1 ]; then
		for f in spans traces partials idlq sdlq; do kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA" --delete --topic "$P-$f" >/dev/null 2>&1 || true; done
		curl -s -X DELETE "$ES/$P-*" >/dev/null || true
		echo "  topics and indices of $P deleted (KEEP=1 keeps them)"
	fi
}

case "${1:-}" in
start) start "${2:-}" ;;
check) check ;;
stop) stop ;;
*) echo "usage: run-on-host.sh start BINDIR | check | stop" >&2; exit 2 ;;
esac
