#!/usr/bin/env bash
# Real Apache Kafka (KRaft), an Elasticsearch-API engine and Prometheus on 127.0.0.1 for tracepipe's tests.
#
#   services.sh up [SERVICE...]      install what is missing, start, health-check (idempotent)
#   services.sh down [SERVICE...]    stop what this script started (TERM, then KILL); no-op if nothing runs
#   services.sh status               one line per service
#   services.sh running              the names (kafka, search, prometheus) of the services that run, one a line
#   services.sh env                  `export TRACEPIPE_...=...` lines for the running services (use with eval)
#   services.sh logs [SERVICE...]    the tail of each service's log
#   services.sh clean                down, then delete all data, logs and fetched jars
#   services.sh node ACTION UNIT     kill (SIGKILL), stop (TERM), start, pause (SIGSTOP) or resume (SIGCONT) one
#                                    node: UNIT is broker-1, broker-2, broker-3 (kafka-cluster) or spare-search
#
# SERVICE is kafka, search or prometheus (default for up: these three), or kafka-cluster (three combined
# broker+controller KRaft nodes, replication factor 3, min.insync.replicas 2) or spare-search (a private
# Elasticsearch that failure tests may pause or stop); down without SERVICE stops all five.
# Documented in deploy/local/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

DIR=${TRACEPIPE_SERVICES_DIR:-/tmp/tracepipe-services}
HOST=127.0.0.1
KAFKA_PORT=${TRACEPIPE_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${TRACEPIPE_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${TRACEPIPE_KAFKA_HEAP:-512m}
ES_PORT=${TRACEPIPE_ES_PORT:-9200}
ES_TRANSPORT_PORT=${TRACEPIPE_ES_TRANSPORT_PORT:-9300}
ES_HEAP=${TRACEPIPE_ES_HEAP:-1g}
# Empty: the engine that runs now, else elasticsearch (resolved below, once the helpers exist).
ENGINE=${TRACEPIPE_SEARCH_ENGINE:-}
PROM_PORT=${TRACEPIPE_PROMETHEUS_PORT:-9090}
# The 3-node cluster: node N listens on CLUSTER_PORT+N-1 (clients) and CLUSTER_CONTROLLER_PORT+N-1 (controllers).
CLUSTER_PORT=${TRACEPIPE_KAFKA_CLUSTER_PORT:-19392}
CLUSTER_CONTROLLER_PORT=${TRACEPIPE_KAFKA_CLUSTER_CONTROLLER_PORT:-19492}
CLUSTER_HEAP=${TRACEPIPE_KAFKA_CLUSTER_HEAP:-384m}
CLUSTER_NODES=(1 2 3)
SPARE_PORT=${TRACEPIPE_SPARE_ES_PORT:-9271}
SPARE_TRANSPORT_PORT=${TRACEPIPE_SPARE_ES_TRANSPORT_PORT:-9371}
SPARE_HEAP=${TRACEPIPE_SPARE_ES_HEAP:-512m}
START_TIMEOUT=${TRACEPIPE_START_TIMEOUT:-180}
# The test broker's data is disposable. A broker loads every partition before it answers (on this kind of machine
# about 30 a second), so one that has gathered thousands of test topics can take minutes to start: kafka_up
# deletes the data first when it holds more than KAFKA_MAX_PARTITIONS partitions or KAFKA_MAX_DATA_MB megabytes,
# or always when TRACEPIPE_KAFKA_FRESH=1 (scripts/check.sh sets it, so CI starts from an empty broker).
KAFKA_MAX_PARTITIONS=${TRACEPIPE_KAFKA_MAX_PARTITIONS:-1500}
KAFKA_MAX_DATA_MB=${TRACEPIPE_KAFKA_MAX_DATA_MB:-8192}
KAFKA_FRESH=${TRACEPIPE_KAFKA_FRESH:-0}
# Likewise the test search engine's data: tests leave indices behind, and a node refuses new indices beyond 1,000
# shards. search_up deletes the stopped engine's data when it holds more than SEARCH_MAX_SHARDS shards, or always
# when TRACEPIPE_SEARCH_FRESH=1 (scripts/check.sh sets it).
SEARCH_MAX_SHARDS=${TRACEPIPE_SEARCH_MAX_SHARDS:-600}
SEARCH_FRESH=${TRACEPIPE_SEARCH_FRESH:-0}
STOP_TIMEOUT=${TRACEPIPE_STOP_TIMEOUT:-30}
# Extra arguments for every mvn call, e.g. -Dmaven.repo.local=/tmp/m2 to measure a cold start.
read -r -a MVN_ARGS <<<"${TRACEPIPE_MAVEN_ARGS:-}"
ALL_SERVICES=(kafka search prometheus)
# Started only when named; stopped by a bare `down` too.
EXTRA_SERVICES=(kafka-cluster spare-search)

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

case $ENGINE in
'' | elasticsearch | opensearch) ;;
*) die "TRACEPIPE_SEARCH_ENGINE must be elasticsearch or opensearch, not '$ENGINE'" ;;
esac
# The codelibs runners give node N the HTTP port baseHttpPort+N and refuse ports above 9299.
if ((ES_PORT < 1025 || ES_PORT > 9299)); then
	die "TRACEPIPE_ES_PORT must be in 1025..9299 (a limit of the codelibs runner), not $ES_PORT"
fi
if ((SPARE_PORT < 1025 || SPARE_PORT > 9299)); then
	die "TRACEPIPE_SPARE_ES_PORT must be in 1025..9299 (a limit of the codelibs runner), not $SPARE_PORT"
fi

# ---------------------------------------------------------------------------------------------------------------
# helpers

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		die "need root to run: $*"
	fi
}

# apt_install PKG... installs Debian packages without starting their services (a policy-rc.d that denies every
# start is put in place for the install when none exists), running `apt-get update` once if the first try fails.
apt_install() {
	local policy=/usr/sbin/policy-rc.d made_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
		as_root chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	log "apt-get install $*"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$DIR/apt.log" 2>&1; then
		log "apt-get install failed; running apt-get update and retrying"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$DIR/apt.log" 2>&1 || true
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$DIR/apt.log" 2>&1 || rc=$?
	fi
	[ -n "$made_policy" ] && as_root rm -f "$policy"
	if [ "$rc" != 0 ]; then
		tail -n 30 "$DIR/apt.log" >&2
		die "apt-get install $* failed (full log: $DIR/apt.log)"
	fi
}

need_tools() {
	local missing=()
	command -v curl >/dev/null || missing+=(curl)
	command -v flock >/dev/null || missing+=(util-linux)
	if [[ " $* " == *" java "* ]]; then
		command -v "$JAVA" >/dev/null || missing+=(openjdk-17-jre-headless)
		command -v mvn >/dev/null || missing+=(maven)
	fi
	if [[ " $* " == *" prometheus "* ]]; then
		{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
	fi
	# Headless Chromium for the web UI's browser tests (query/ui), which never skip under CI=true.
	{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || missing+=(chromium fonts-dejavu-core)
	if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pidfile() { echo "$DIR/$1/pid"; }

# marker SVC: a string that is in the command line of the process we started for SVC, so that a recycled pid
# never makes us signal a stranger.
marker() {
	case $1 in
	prometheus) echo "--config.file=$DIR/prometheus/prometheus.yml" ;;
	*) echo "-Dtracepipe.service=$1" ;;
	esac
}

# running_pid SVC: prints the pid and succeeds if SVC (kafka, elasticsearch, opensearch, prometheus) runs.
running_pid() {
	local f pid
	f=$(pidfile "$1")
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(marker "$1") " || return 1
	echo "$pid"
}

# stop_service SVC [PID]: TERM, wait up to STOP_TIMEOUT, then KILL. Without PID, the pid file's process, if it is
# the one we started.
stop_service() {
	local svc=$1 pid=${2:-} t0
	if [ -z "$pid" ] && ! pid=$(running_pid "$svc"); then
		rm -f "$(pidfile "$svc")"
		return 0
	fi
	t0=$(now)
	kill -TERM "$pid" 2>/dev/null || true
	local waited=0
	while kill -0 "$pid" 2>/dev/null; do
		if ((waited >= STOP_TIMEOUT * 10)); then
			log "$svc (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	rm -f "$(pidfile "$svc")"
	log "$svc stopped ($(since "$t0"))"
}

# fail_start SVC LOG MESSAGE: print the log tail, stop what was started, exit non-zero.
fail_start() {
	local svc=$1 logf=$2
	shift 2
	log "$svc failed to start: $*"
	if [ -f "$logf" ]; then
		log "---- last 60 lines of $logf ----"
		tail -n 60 "$logf" >&2
		log "---- end of $logf ----"
	fi
	# The pid file holds the pid of the process launch started (setsid execs it), whatever it runs by now.
	local pid
	pid=$(cat "$(pidfile "$svc")" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then stop_service "$svc" "$pid"; else rm -f "$(pidfile "$svc")"; fi
	exit 1
}

# fetch_jars NAME: the runtime class path of deploy/local/NAME/pom.xml, copied to $DIR/NAME/lib from Maven
# Central through the local Maven repository (~/.m2). Re-fetched only when the pom changes.
fetch_jars() {
	local name=$1 pom="$HERE/$1/pom.xml" lib="$DIR/$1/lib" stamp
	stamp=$(sha256sum "$pom" | cut -d' ' -f1)
	if [ -f "$lib/.stamp" ] && [ "$(cat "$lib/.stamp")" = "$stamp" ]; then return 0; fi
	local t0
	t0=$(now)
	log "fetching $name jars with Maven (deploy/local/$name/pom.xml)"
	rm -rf "$lib.tmp"
	if ! mvn -q -B "${MVN_ARGS[@]}" -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$lib.tmp" >"$DIR/$name/mvn.log" 2>&1; then
		tail -n 40 "$DIR/$name/mvn.log" >&2
		die "mvn dependency:copy-dependencies for $name failed (log: $DIR/$name/mvn.log)"
	fi
	echo "$stamp" >"$lib.tmp/.stamp"
	rm -rf "$lib"
	mv "$lib.tmp" "$lib"
	log "$name jars ready ($(since "$t0"), $(du -sh "$lib" | cut -f1))"
}

# launch SVC LOG CMD...: start CMD detached (own session, no stdin) with output to LOG; record its pid.
launch() {
	local svc=$1 logf=$2
	shift 2
		[ -f "$logf" ] && mv -f "$logf" "$logf.1"
	# fd 9 holds the services lock: the service must not inherit it.
	setsid "$@" >"$logf" 2>&1 </dev/null 9>&- &
	echo $! >"$(pidfile "$svc")"
}

# wait_healthy SVC LOG CHECK...: poll CHECK until it succeeds, the process dies, or START_TIMEOUT passes.
wait_healthy() {
	local svc=$1 logf=$2 t0
	shift 2
	t0=$(date +%s)
	while true; do
		# Not running_pid: just after launch the process may not have exec'd yet.
		kill -0 "$(cat "$(pidfile "$svc")")" 2>/dev/null || fail_start "$svc" "$logf" "the process exited"
		if "$@" >/dev/null 2>&1; then
			running_pid "$svc" >/dev/null || fail_start "$svc" "$logf" "something else answers in its place"
			return 0
		fi
		if (($(date +%s) - t0 >= START_TIMEOUT)); then
			fail_start "$svc" "$logf" "not healthy after ${START_TIMEOUT}s"
		fi
		sleep 0.5
	done
}

port_free_or_die() {
	local svc=$1 port=$2 what=$3
	if port_open "$port"; then
		die "cannot start $svc: 127.0.0.1:$port is already in use by a process this script did not start ($what)"
	fi
}

# ---------------------------------------------------------------------------------------------------------------
# Kafka

# kafka_tool ARGS...: a short-lived JVM on Kafka's class path (storage format, admin tools), logging warnings only.
kafka_tool() {
	"$JAVA" -Xmx256m -Dlog4j.configuration="file:$HERE/kafka/tools-log4j.properties" -cp "$DIR/kafka/lib/*" "$@"
}

# kafka_healthy: the broker answers a metadata request (list topics).
kafka_healthy() {
	timeout 30 "$JAVA" -Xmx128m -Dlog4j.configuration="file:$HERE/kafka/tools-log4j.properties" \
		-cp "$DIR/kafka/lib/*" org.apache.kafka.tools.TopicCommand \
		--bootstrap-server "$HOST:$KAFKA_PORT" --list
}

# kafka_bound_data DATA: delete the stopped test broker's DATA when KAFKA_FRESH=1 or it holds more partitions or
# megabytes than the bounds above (kafka_up formats it again with the same cluster id).
kafka_bound_data() {
	local data=$1 parts mb why=
	[ -d "$data" ] || return 0
	parts=$(find "$data" -mindepth 1 -maxdepth 1 -type d | wc -l)
	mb=$(du -sm "$data" | cut -f1)
	if [ "$KAFKA_FRESH" = 1 ]; then
		why="TRACEPIPE_KAFKA_FRESH=1"
	elif ((parts > KAFKA_MAX_PARTITIONS)); then
		why="more than TRACEPIPE_KAFKA_MAX_PARTITIONS=$KAFKA_MAX_PARTITIONS partitions"
	elif ((mb > KAFKA_MAX_DATA_MB)); then
		why="more than TRACEPIPE_KAFKA_MAX_DATA_MB=$KAFKA_MAX_DATA_MB MB"
	fi
	[ -n "$why" ] || return 0
	log "kafka: deleting the test broker's data ($parts partitions, $mb MB; $why)"
	rm -rf "$data"
}

kafka_up() {
	local d="$DIR/kafka" pid
	if pid=$(running_pid kafka); then
		log "kafka already running (pid $pid) on $HOST:$KAFKA_PORT"
		return 0
	fi
	port_free_or_die kafka "$KAFKA_PORT" TRACEPIPE_KAFKA_PORT
	port_free_or_die kafka "$KAFKA_CONTROLLER_PORT" TRACEPIPE_KAFKA_CONTROLLER_PORT
	local t0
	t0=$(now)
	kafka_bound_data "$d/data"
	mkdir -p "$d/data" "$d/logs"
	fetch_jars kafka
	cat >"$d/server.properties" <<EOF
# Written by deploy/local/services.sh: a single combined broker+controller in KRaft mode.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.retention.hours=2
log.roll.hours=1
log.segment.bytes=67108864
EOF
	if [ ! -f "$d/data/meta.properties" ]; then
		[ -s "$d/cluster.id" ] || kafka_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$d/cluster.id"
		kafka_tool kafka.tools.StorageTool format -t "$(cat "$d/cluster.id")" \
			-c "$d/server.properties" --ignore-formatted >"$d/format.log" 2>&1 ||
			{ cat "$d/format.log" >&2; die "kafka storage format failed"; }
	fi
	launch kafka "$d/kafka.log" "$JAVA" -Dtracepipe.service=kafka \
		"-Xms256m" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$HERE/kafka/log4j.properties" -Dkafka.logs.dir="$d/logs" \
		-cp "$d/lib/*" kafka.Kafka "$d/server.properties"
	wait_healthy kafka "$d/kafka.log" port_open "$KAFKA_PORT"
	wait_healthy kafka "$d/kafka.log" kafka_healthy
	log "kafka ready on $HOST:$KAFKA_PORT (pid $(running_pid kafka), $(since "$t0"))"
}

# ---------------------------------------------------------------------------------------------------------------
# Elasticsearch 7.10.2 or OpenSearch 2.19.1

other_engine() { if [ "$1" = elasticsearch ]; then echo opensearch; else echo elasticsearch; fi; }

# search_healthy [PORT]: the engine on PORT (default ES_PORT) reports a yellow or green cluster.
search_healthy() {
	curl -fsS --max-time 5 "http://$HOST:${1:-$ES_PORT}/_cluster/health?wait_for_status=yellow&timeout=4s"
}

# engine_start UNIT ENGINE DIR LIB PORT TRANSPORT_PORT HEAP CLUSTER: write the node's config under DIR, launch
# ENGINE (elasticsearch or opensearch, jars in LIB) as UNIT and wait until it is healthy on PORT.
engine_start() {
	local unit=$1 engine=$2 d=$3 lib=$4 port=$5 tport=$6 heap=$7 cluster=$8
	mkdir -p "$d/node_1/config" "$d/tmp"
	local yml=elasticsearch.yml main=org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner
	if [ "$engine" = opensearch ]; then
		yml=opensearch.yml main=org.codelibs.opensearch.runner.OpenSearchRunner
	fi
	# The runner copies its own (empty) config only when none exists, and its command-line settings
	# (http.port, cluster.name, node.name, paths) override this file.
	cat >"$d/node_1/config/$yml" <<EOF
# Written by deploy/local/services.sh.
network.host: $HOST
transport.port: $tport
discovery.type: single-node
# A nearly full disk must not turn indices read-only or leave shards unassigned in tests.
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
	# Log4j 2.11 inside Elasticsearch 7.10.2: disable message lookups (CVE-2021-44228), though it listens on loopback only.
	launch "$unit" "$d/$engine.log" "$JAVA" -Dtracepipe.service="$unit" \
		"-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
		-Djava.io.tmpdir="$d/tmp" -Dlog4j2.formatMsgNoLookups=true -Dlog4j2.disable.jmx=true \
		-cp "$lib/*" "$main" -basePath "$d" -numOfNode 1 -baseHttpPort $((port - 1)) \
		-clusterName "$cluster"
	wait_healthy "$unit" "$d/$engine.log" search_healthy "$port"
	# The runner moves to the next free port when its port is taken: make sure the node we started is the one
	# answering on its port.
	grep -q "HTTP Port: *$port\$" "$d/$engine.log" ||
		fail_start "$unit" "$d/$engine.log" "the node did not bind http port $port"
}

# search_bound_data ENGINE DATA: delete the stopped engine's DATA when SEARCH_FRESH=1 or it holds more shards than
# SEARCH_MAX_SHARDS.
search_bound_data() {
	local engine=$1 data=$2 shards why=
	[ -d "$data" ] || return 0
	shards=$(find "$data" -mindepth 5 -maxdepth 5 -type d -path '*/indices/*' -regex '.*/[0-9]+' | wc -l) # nodes/0/indices/UUID/SHARD
	if [ "$SEARCH_FRESH" = 1 ]; then
		why="TRACEPIPE_SEARCH_FRESH=1"
	elif ((shards > SEARCH_MAX_SHARDS)); then
		why="more than TRACEPIPE_SEARCH_MAX_SHARDS=$SEARCH_MAX_SHARDS shards"
	fi
	[ -n "$why" ] || return 0
	log "$engine: deleting the test node's data ($shards shards; $why)"
	rm -rf "$data"
}

search_up() {
	local d="$DIR/$ENGINE" pid other
	other=$(other_engine "$ENGINE")
	if pid=$(running_pid "$other"); then
		log "$other is running (pid $pid) but TRACEPIPE_SEARCH_ENGINE=$ENGINE: stopping $other"
		stop_service "$other"
	fi
	if pid=$(running_pid "$ENGINE"); then
		log "$ENGINE already running (pid $pid) on http://$HOST:$ES_PORT"
		return 0
	fi
	port_free_or_die "$ENGINE" "$ES_PORT" TRACEPIPE_ES_PORT
	port_free_or_die "$ENGINE" "$ES_TRANSPORT_PORT" TRACEPIPE_ES_TRANSPORT_PORT
	local t0
	t0=$(now)
	fetch_jars "$ENGINE"
	search_bound_data "$ENGINE" "$d/node_1/data"
	engine_start "$ENGINE" "$ENGINE" "$d" "$d/lib" "$ES_PORT" "$ES_TRANSPORT_PORT" "$ES_HEAP" tracepipe
	log "$ENGINE ready on http://$HOST:$ES_PORT (pid $(running_pid "$ENGINE"), $(since "$t0"))"
}

# ---------------------------------------------------------------------------------------------------------------
# A 3-node Kafka cluster (kafka-cluster) and a spare search engine (spare-search), for failure tests

# Node N of the cluster is the unit kafka-cluster/broker-N (pid file, data and log under $DIR/kafka-cluster/broker-N).
cluster_unit() { echo "kafka-cluster/broker-$1"; }
cluster_port() { echo $((CLUSTER_PORT + $1 - 1)); }
cluster_bootstrap() {
	local n out=()
	for n in "${CLUSTER_NODES[@]}"; do out+=("$HOST:$(cluster_port "$n")"); done
	(IFS=,; echo "${out[*]}")
}

# cluster_registered: every node is a registered, unfenced broker (BrokerApiVersionsCommand lists one entry per
# broker it finds in the metadata).
cluster_registered() {
	local n
	n=$(timeout 30 "$JAVA" -Xmx128m -Dlog4j.configuration="file:$HERE/kafka/tools-log4j.properties" \
		-cp "$DIR/kafka/lib/*" kafka.admin.BrokerApiVersionsCommand --bootstrap-server "$(cluster_bootstrap)" 2>/dev/null |
		grep -c "^$HOST:[0-9]* (id: ")
	((n == ${#CLUSTER_NODES[@]}))
}

# cluster_node_config N: write broker-N's server.properties and format its storage once.
cluster_node_config() {
	local n=$1 d voters="" m
	d="$DIR/$(cluster_unit "$n")"
	mkdir -p "$d/data" "$d/logs"
	for m in "${CLUSTER_NODES[@]}"; do voters+="${voters:+,}$m@$HOST:$((CLUSTER_CONTROLLER_PORT + m - 1))"; done
	cat >"$d/server.properties" <<EOF
# Written by deploy/local/services.sh: node $n of a 3-node KRaft cluster, each node broker and controller.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(cluster_port "$n"),CONTROLLER://$HOST:$((CLUSTER_CONTROLLER_PORT + n - 1))
advertised.listeners=PLAINTEXT://$HOST:$(cluster_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
# A killed node is fenced (and dropped from every ISR) after 6 s without a heartbeat (defaults 2 s / 9 s).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
log.retention.hours=2
log.roll.hours=1
log.segment.bytes=67108864
EOF
	if [ ! -f "$d/data/meta.properties" ]; then
		kafka_tool kafka.tools.StorageTool format -t "$(cat "$DIR/kafka-cluster/cluster.id")" \
			-c "$d/server.properties" --ignore-formatted >"$d/format.log" 2>&1 ||
			{ cat "$d/format.log" >&2; die "kafka-cluster broker-$n: storage format failed"; }
	fi
}

# cluster_node_launch N: start broker-N from its config (written by cluster_node_config) and wait for its port.
cluster_node_launch() {
	local n=$1 unit d
	unit=$(cluster_unit "$n")
	d="$DIR/$unit"
	port_free_or_die "$unit" "$(cluster_port "$n")" TRACEPIPE_KAFKA_CLUSTER_PORT
	port_free_or_die "$unit" $((CLUSTER_CONTROLLER_PORT + n - 1)) TRACEPIPE_KAFKA_CLUSTER_CONTROLLER_PORT
	launch "$unit" "$d/kafka.log" "$JAVA" -Dtracepipe.service="$unit" \
		"-Xms128m" "-Xmx$CLUSTER_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$HERE/kafka/log4j.properties" -Dkafka.logs.dir="$d/logs" \
		-cp "$DIR/kafka/lib/*" kafka.Kafka "$d/server.properties"
	wait_healthy "$unit" "$d/kafka.log" port_open "$(cluster_port "$n")"
}

kafka-cluster_up() {
	local n t0 pids=() started=()
	t0=$(now)
	mkdir -p "$DIR/kafka-cluster"
	fetch_jars kafka
	[ -s "$DIR/kafka-cluster/cluster.id" ] ||
		kafka_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$DIR/kafka-cluster/cluster.id"
	for n in "${CLUSTER_NODES[@]}"; do
		if running_pid "$(cluster_unit "$n")" >/dev/null; then continue; fi
		cluster_node_config "$n"
		# The three nodes must start together: a controller quorum needs two of them.
		cluster_node_launch "$n" &
		pids+=($!)
		started+=("broker-$n")
	done
	for n in "${pids[@]}"; do wait "$n" || die "kafka-cluster: a node failed to start"; done
	wait_healthy "$(cluster_unit 1)" "$DIR/$(cluster_unit 1)/kafka.log" cluster_registered
	log "kafka-cluster ready on $(cluster_bootstrap) (started: ${started[*]:-none, all were running}; $(since "$t0"))"
}

spare-search_up() {
	local d="$DIR/spare-search" pid t0
	if pid=$(running_pid spare-search); then
		log "spare-search already running (pid $pid) on http://$HOST:$SPARE_PORT"
		return 0
	fi
	port_free_or_die spare-search "$SPARE_PORT" TRACEPIPE_SPARE_ES_PORT
	port_free_or_die spare-search "$SPARE_TRANSPORT_PORT" TRACEPIPE_SPARE_ES_TRANSPORT_PORT
	t0=$(now)
	mkdir -p "$DIR/elasticsearch" "$d"
	fetch_jars elasticsearch
	engine_start spare-search elasticsearch "$d" "$DIR/elasticsearch/lib" "$SPARE_PORT" "$SPARE_TRANSPORT_PORT" \
		"$SPARE_HEAP" tracepipe-spare
	log "spare-search (elasticsearch) ready on http://$HOST:$SPARE_PORT (pid $(running_pid spare-search), $(since "$t0"))"
}

# cmd_node ACTION UNIT: act on one node of kafka-cluster (broker-1..3) or on spare-search.
cmd_node() {
	local action=${1:-} name=${2:-} unit pid
	case $name in
	broker-[1-9]) unit=$(cluster_unit "${name#broker-}") ;;
	spare-search) unit=spare-search ;;
	*) die "node: UNIT must be broker-1, broker-2, broker-3 or spare-search, not '$name'" ;;
	esac
	case $action in
	start)
		with_lock
		if pid=$(running_pid "$unit"); then
			log "$name already running (pid $pid)"
			return 0
		fi
		if [ "$unit" = spare-search ]; then spare-search_up; else
			cluster_node_config "${name#broker-}"
			cluster_node_launch "${name#broker-}"
			log "$name started (pid $(running_pid "$unit")) on $HOST:$(cluster_port "${name#broker-}")"
		fi
		;;
	kill | stop | pause | resume)
		pid=$(running_pid "$unit") || die "node $action: $name is not running"
		case $action in
		kill)
			kill -KILL "$pid"
			while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
			rm -f "$(pidfile "$unit")"
			;;
		stop) stop_service "$unit" "$pid" ;;
		pause) kill -STOP "$pid" ;;
		resume) kill -CONT "$pid" ;;
		esac
		log "$name: $action (pid $pid)"
		;;
	*) die "node: ACTION must be kill, stop, start, pause or resume, not '$action'" ;;
	esac
}

# ---------------------------------------------------------------------------------------------------------------
# Prometheus

prometheus_healthy() { curl -fsS --max-time 2 "http://$HOST:$PROM_PORT/-/ready"; }

prometheus_up() {
	local d="$DIR/prometheus" pid
	if pid=$(running_pid prometheus); then
		log "prometheus already running (pid $pid) on http://$HOST:$PROM_PORT"
		return 0
	fi
	port_free_or_die prometheus "$PROM_PORT" TRACEPIPE_PROMETHEUS_PORT
	local t0
	t0=$(now)
	mkdir -p "$d/data" "$d/targets"
	# Targets from an earlier run are stale: tests add their own files and remove them when they end.
	rm -f "$d/targets/"*.json
	cat >"$d/prometheus.yml" <<EOF
# Written by deploy/local/services.sh.
global:
  scrape_interval: 15s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['$HOST:$PROM_PORT']
  # Tests write file_sd JSON files into $d/targets
  # (TRACEPIPE_PROMETHEUS_TARGETS) and remove them when they end.
  - job_name: tracepipe
    scrape_interval: 1s
    scrape_timeout: 1s
    file_sd_configs:
      - files: ['$d/targets/*.json']
        refresh_interval: 1s
EOF
	promtool check config "$d/prometheus.yml" >"$d/check.log" 2>&1 ||
		{ cat "$d/check.log" >&2; die "promtool rejects $d/prometheus.yml"; }
	launch prometheus "$d/prometheus.log" "$(command -v prometheus)" \
		"--config.file=$d/prometheus.yml" "--storage.tsdb.path=$d/data" \
		--storage.tsdb.retention.time=1d "--web.listen-address=$HOST:$PROM_PORT" --web.enable-lifecycle
	wait_healthy prometheus "$d/prometheus.log" prometheus_healthy
	log "prometheus ready on http://$HOST:$PROM_PORT (pid $(running_pid prometheus), $(since "$t0"))"
}

# ---------------------------------------------------------------------------------------------------------------
# commands

services_from_args() {
	if (($# == 0)); then set -- "${ALL_SERVICES[@]}"; fi
	local s
	for s in "$@"; do
		case $s in
		kafka | search | prometheus | kafka-cluster | spare-search) echo "$s" ;;
		elasticsearch | opensearch | es) echo search ;;
		*) die "unknown service '$s' (kafka, search, prometheus, kafka-cluster or spare-search)" ;;
		esac
	done
}

# units SVC: the pid-file names behind a service name.
units() {
	case $1 in
	search) echo elasticsearch opensearch ;;
	kafka-cluster) for n in "${CLUSTER_NODES[@]}"; do cluster_unit "$n"; done ;;
	*) echo "$1" ;;
	esac
}

with_lock() {
	mkdir -p "$DIR"
	exec 9>"$DIR/.lock"
	flock 9
}

cmd_up() {
	local svcs t0
	svcs=$(services_from_args "$@")
	t0=$(now)
	with_lock
	local need=()
	[[ $svcs == *kafka* || $svcs == *search* ]] && need+=(java) # kafka-cluster and spare-search too
	[[ $svcs == *prometheus* ]] && need+=(prometheus)
	need_tools "${need[@]}"
	# Fetch jars one service at a time (Maven's local repository is not safe for concurrent downloads), then start
	# the services in parallel: each mostly waits for its JVM to warm up.
	local s
	for s in $svcs; do
		case $s in
		kafka | kafka-cluster) mkdir -p "$DIR/kafka" && fetch_jars kafka ;;
		search) mkdir -p "$DIR/$ENGINE" && fetch_jars "$ENGINE" ;;
		spare-search) mkdir -p "$DIR/elasticsearch" && fetch_jars elasticsearch ;;
		esac
	done
	local pids=() failed=()
	for s in $svcs; do
		"${s}_up" &
		pids+=("$s:$!")
	done
	local p
	for p in "${pids[@]}"; do
		wait "${p#*:}" || failed+=("${p%%:*}")
	done
	if ((${#failed[@]})); then die "up: ${failed[*]} failed to start (see above; logs under $DIR)"; fi
	log "up: all requested services healthy ($(since "$t0")); data and logs under $DIR"
}

cmd_down() {
	local svcs s u
	if (($# == 0)); then set -- "${ALL_SERVICES[@]}" "${EXTRA_SERVICES[@]}"; fi
	svcs=$(services_from_args "$@")
	[ -d "$DIR" ] || return 0
	with_lock
	# Reverse order: the spare engine, the cluster, prometheus, then the search engine, then Kafka.
	for s in $(echo "$svcs" | tac); do
		# The cluster's nodes stop together: the last one alone would wait for a controller quorum that is gone
		# (STOP_TIMEOUT, then KILL).
		for u in $(units "$s"); do stop_service "$u" & done
		wait
	done
}

# cmd_status prints one line per service; exits 0 when Kafka, one search engine and Prometheus all run, else 1.
cmd_status() {
	local u pid addr up=0
	for u in kafka elasticsearch opensearch prometheus; do
		case $u in
		kafka) addr="$HOST:$KAFKA_PORT" ;;
		prometheus) addr="http://$HOST:$PROM_PORT" ;;
		*) addr="http://$HOST:$ES_PORT" ;;
		esac
		if pid=$(running_pid "$u"); then
			printf '%-14s running  pid %-8s %s\n' "$u" "$pid" "$addr"
			up=$((up + 1))
		else
			printf '%-14s stopped\n' "$u"
		fi
	done
	local n
	for n in "${CLUSTER_NODES[@]}"; do
		if pid=$(running_pid "$(cluster_unit "$n")"); then
			printf '%-14s running  pid %-8s %s\n' "broker-$n" "$pid" "$HOST:$(cluster_port "$n") (kafka-cluster)"
		else
			printf '%-14s stopped  (kafka-cluster)\n' "broker-$n"
		fi
	done
	if pid=$(running_pid spare-search); then
		printf '%-14s running  pid %-8s %s\n' spare-search "$pid" "http://$HOST:$SPARE_PORT"
	else
		printf '%-14s stopped\n' spare-search
	fi
	((up == 3))
}

# cluster_running: every node of kafka-cluster runs.
cluster_running() {
	local n
	for n in "${CLUSTER_NODES[@]}"; do running_pid "$(cluster_unit "$n")" >/dev/null || return 1; done
}

cmd_running() {
	running_pid kafka >/dev/null && echo kafka
	{ running_pid elasticsearch || running_pid opensearch; } >/dev/null && echo search
	running_pid prometheus >/dev/null && echo prometheus
	cluster_running && echo kafka-cluster
	running_pid spare-search >/dev/null && echo spare-search
	return 0
}

cmd_env() {
	local engine=
	if running_pid kafka >/dev/null; then
		echo "export TRACEPIPE_KAFKA=$HOST:$KAFKA_PORT"
	else
		echo "# kafka is not running: bash deploy/local/services.sh up"
	fi
	running_pid elasticsearch >/dev/null && engine=elasticsearch
	running_pid opensearch >/dev/null && engine=opensearch
	if [ -n "$engine" ]; then
		echo "export TRACEPIPE_ES=http://$HOST:$ES_PORT"
		echo "export TRACEPIPE_ES_ENGINE=$engine"
	else
		echo "# no search engine is running: bash deploy/local/services.sh up"
	fi
	if running_pid prometheus >/dev/null; then
		echo "export TRACEPIPE_PROMETHEUS=http://$HOST:$PROM_PORT"
		echo "export TRACEPIPE_PROMETHEUS_TARGETS=$DIR/prometheus/targets"
	else
		echo "# prometheus is not running: bash deploy/local/services.sh up"
	fi
	if command -v promtool >/dev/null; then
		echo "export TRACEPIPE_PROMTOOL=$(command -v promtool)"
	fi
	# Failure tests kill, restart and pause nodes through this script (services.sh node ...).
	echo "export TRACEPIPE_SERVICES_SH=$HERE/services.sh"
	echo "export TRACEPIPE_SERVICES_DIR=$DIR"
	if cluster_running; then
		echo "export TRACEPIPE_KAFKA_CLUSTER=$(cluster_bootstrap)"
	else
		echo "# kafka-cluster is not running: bash deploy/local/services.sh up kafka-cluster"
	fi
	if running_pid spare-search >/dev/null; then
		echo "export TRACEPIPE_SPARE_ES=http://$HOST:$SPARE_PORT"
	else
		echo "# spare-search is not running: bash deploy/local/services.sh up spare-search"
	fi
	local jq
	for jq in "$DIR"/jaeger/jaeger-query-*; do
		[ -x "$jq" ] && [[ "$jq" != *.tmp ]] && echo "export TRACEPIPE_JAEGER_QUERY=$jq"
	done
	[ -n "${jq:-}" ] && [ -x "$jq" ] || echo "# Jaeger Query is not built: bash deploy/local/jaeger-query.sh"
}

cmd_logs() {
	local s u f
	for s in $(services_from_args "$@"); do
		for u in $(units "$s"); do
			f="$DIR/$u/$u.log"
			# Cluster nodes write kafka.log, the spare engine elasticsearch.log.
			[ -f "$f" ] || f=$(find "$DIR/$u" -maxdepth 1 -name '*.log' 2>/dev/null | head -n 1)
			[ -n "$f" ] && [ -f "$f" ] || continue
			echo "==> $f <=="
			tail -n "${LINES:-50}" "$f"
		done
	done
}

cmd_clean() {
	cmd_down
	log "deleting $DIR"
	rm -rf "$DIR"
}

if [ -z "$ENGINE" ]; then
	if running_pid opensearch >/dev/null; then ENGINE=opensearch; else ENGINE=elasticsearch; fi
fi

verb=${1:-}
shift || true
case $verb in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) cmd_status ;;
running) cmd_running ;;
env) cmd_env ;;
logs) cmd_logs "$@" ;;
clean) cmd_clean ;;
node) cmd_node "$@" ;;
*)
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
