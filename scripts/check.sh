#!/usr/bin/env bash
# The whole suite, as CI runs it (.ci/run -> make check -> this script):
#   1. download Go modules;
#   2. start real Kafka, the Elasticsearch-API engine and Prometheus, and for the failure tests (internal/failover)
#      a 3-node Kafka cluster and a spare Elasticsearch (deploy/local/services.sh up ..., which installs what is
#      missing) in the background while
#   3. lint runs (scripts/lint.sh: gofmt, go vet, staticcheck);
#   4. run every test, unit and integration, with the race detector; fuzz targets run their seed corpora;
#   5. stop the services again — unless they were already running before this script started.
# Timings are printed per phase. Under CI=true a test whose service is missing fails instead of skipping.
# A lint failure does not stop the tests from running, but fails the script.
#
# Variables: TEST_TIMEOUT (go test -timeout, default 20m), PKGS (default ./...), GOTESTFLAGS (extra go test flags),
# CHECK_ENGINES (default "elasticsearch opensearch": the search-engine tests run on each, proving compatibility with
# both; CHECK_ENGINES= runs them on the started engine only), TEST_LOG (default
# .tmp/go-test.log), and those of deploy/local/services.sh (ports, TRACEPIPE_SEARCH_ENGINE=elasticsearch|opensearch).
# shellcheck disable=SC2317 # cleanup and run_tests run through trap and phase
set -euo pipefail
cd "$(dirname "$0")/.."

# A broker this script starts starts on empty data: earlier runs' topics would only slow its start (one already
# running is used as it is).
export TRACEPIPE_KAFKA_FRESH=${TRACEPIPE_KAFKA_FRESH:-1}
export TRACEPIPE_SEARCH_FRESH=${TRACEPIPE_SEARCH_FRESH:-1}
SERVICES=(bash deploy/local/services.sh)
# kafka-cluster and spare-search serve internal/failover only (a broker killed, the engine paused); those tests run
# in the first test pass only (the spare engine is always Elasticsearch, not the engine CHECK_ENGINES switches).
CHECK_SERVICES=(kafka search prometheus kafka-cluster spare-search)
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}
PKGS=${PKGS:-./...}
read -r -a EXTRA <<<"${GOTESTFLAGS:-}"

T0=$(date +%s.%N)
TIMINGS=()
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
banner() { printf '\n==== %s\n' "$*"; }

# phase NAME CMD...: run CMD, record how long it took.
phase() {
	local name=$1 t rc=0
	shift
	banner "$name"
	t=$(date +%s.%N)
	"$@" || rc=$?
	TIMINGS+=("$(printf '%-40s %7ss%s' "$name" "$(elapsed "$t")" "$([ $rc = 0 ] || echo "  (failed, exit $rc)")")")
	return $rc
}

summary() {
	banner "timings"
	local l
	for l in "${TIMINGS[@]}"; do echo "  $l"; done
	printf '  %-40s %7ss\n' total "$(elapsed "$T0")"
}

SWITCHED_FROM=
BEFORE=$("${SERVICES[@]}" running | tr '\n' ' ')
BEFORE=${BEFORE% }
UP_PID=
UP_LOG=$(mktemp)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
		wait "$UP_PID" 2>/dev/null || true
	fi
	local s stop=()
	for s in "${CHECK_SERVICES[@]}"; do
		[[ " $BEFORE " == *" $s "* ]] || stop+=("$s")
	done
	if ((${#stop[@]})); then
		phase "services down (${stop[*]})" "${SERVICES[@]}" down "${stop[@]}" || true
	fi
	# CHECK_ENGINES switched the search engine that was running before: switch back.
	if [ -n "${SWITCHED_FROM:-}" ] && [[ " $BEFORE " == *" search "* ]]; then
		phase "search engine back to $SWITCHED_FROM" env TRACEPIPE_SEARCH_ENGINE="$SWITCHED_FROM" "${SERVICES[@]}" up search || true
	fi
	[ -n "$BEFORE" ] && echo "left running, as found: $BEFORE"
	rm -f "$UP_LOG"
	summary
	[ -z "${COUNTS:-}" ] || printf '\n%s\n' "$COUNTS"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "go: $(go version | cut -d' ' -f3-)   CI=${CI:-}   services running before: ${BEFORE:-none}"

phase "go mod download" go mod download

# Services start (mostly waiting on JVMs) while lint compiles and analyses.
banner "services up (background, log follows after lint)"
T_UP=$(date +%s.%N)
"${SERVICES[@]}" up "${CHECK_SERVICES[@]}" >"$UP_LOG" 2>&1 &
UP_PID=$!

# An unmodified Jaeger Query is built meanwhile too, for the test proving it reads our indices.
JQ_LOG=$(mktemp)
bash deploy/local/jaeger-query.sh >"$JQ_LOG.path" 2>"$JQ_LOG" &
JQ_PID=$!

lint_rc=0
phase "lint" bash scripts/lint.sh || lint_rc=$?

banner "services up (output)"
up_rc=0
wait "$UP_PID" || up_rc=$?
UP_PID=
cat "$UP_LOG"
TIMINGS+=("$(printf '%-40s %7ss%s' "services up (overlapped)" "$(elapsed "$T_UP")" "$([ $up_rc = 0 ] || echo "  (failed, exit $up_rc)")")")
if [ "$up_rc" != 0 ]; then
	echo "services failed to start (exit $up_rc); see the log tail above"
	exit "$up_rc"
fi
eval "$("${SERVICES[@]}" env)"
banner "jaeger query build"
jq_rc=0
wait "$JQ_PID" || jq_rc=$?
if [ "$jq_rc" != 0 ]; then
	tail -n 40 "$JQ_LOG"
	echo "building Jaeger Query failed (exit $jq_rc)"
	exit "$jq_rc"
fi
TRACEPIPE_JAEGER_QUERY=$(cat "$JQ_LOG.path")
export TRACEPIPE_JAEGER_QUERY
rm -f "$JQ_LOG" "$JQ_LOG.path"
env | grep '^TRACEPIPE_' | sort

# run_tests LOG PKG...: go test -v into LOG; the console gets go test's usual terse output (the -v progress lines
# are filtered out). Counts add up over calls into the script's last line, "tests: N passed, N failed, N skipped".
TEST_LOG=${TEST_LOG:-.tmp/go-test.log}
PASSED=0 FAILED=0 SKIPPED=0
COUNTS=
run_tests() {
	local log=$1 rc st
	shift
	mkdir -p "$(dirname "$log")"
	set +e +o pipefail
	go test -v -race -count=1 -timeout "$TEST_TIMEOUT" "${EXTRA[@]}" "$@" 2>&1 | tee "$log" |
		grep --line-buffered -Ev '^=== (RUN|PAUSE|CONT|NAME)|^ *--- PASS: '
	st=("${PIPESTATUS[@]}")
	set -e -o pipefail
	rc=${st[0]}
	local passed failed skipped
	passed=$(grep -cE '^ *--- PASS: ' "$log" || true)
	failed=$(grep -cE '^ *--- FAIL: ' "$log" || true)
	skipped=$(grep -cE '^ *--- SKIP: ' "$log" || true)
	# A build failure or a panic fails a package without a --- FAIL line.
	if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
	PASSED=$((PASSED + passed)) FAILED=$((FAILED + failed)) SKIPPED=$((SKIPPED + skipped))
	COUNTS="tests: $PASSED passed, $FAILED failed, $SKIPPED skipped"
	if [ "$skipped" != 0 ]; then
		echo "skipped tests:"
		grep -E '^ *--- SKIP: ' "$log" | sed 's/^ */  /'
	fi
	echo "go test -v output: $log"
	return "$rc"
}
test_rc=0
# shellcheck disable=SC2086 # PKGS may name several patterns
phase "go test -race ($TRACEPIPE_ES_ENGINE)" run_tests "$TEST_LOG" $PKGS || test_rc=$?

# The deploy files (Dockerfile, compose, Kubernetes) are validated offline by deploy/validate, a module of its own
# (its Kubernetes and compose-spec libraries stay out of tracepipe's module graph).
LOG_ABS=$(realpath -m "${TEST_LOG%.log}-deploy.log")
pushd deploy/validate >/dev/null
phase "go test (deploy files)" run_tests "$LOG_ABS" ./... || test_rc=1
popd >/dev/null

# CHECK_ENGINES: also run the packages whose tests use the search engine against the other engine(s), to prove
# compatibility with each (default: Elasticsearch 7.10 and OpenSearch 2.19; set it empty for the started one only).
MAIN_ENGINE=$TRACEPIPE_ES_ENGINE
for engine in ${CHECK_ENGINES-elasticsearch opensearch}; do
	[ "$engine" = "$MAIN_ENGINE" ] && continue
	mapfile -t es_files < <(git ls-files '*_test.go' | xargs -r grep -lE 'testenv\.Elasticsearch|"TRACEPIPE_ES"')
	mapfile -t es_pkgs < <(printf '%s\n' "${es_files[@]}" | xargs -r -n1 dirname | sort -u | sed 's#^#./#')
	((${#es_pkgs[@]})) || break
	# Of those packages only the tests that use the engine run again: the tests of the files that name it
	# (testenv.Elasticsearch, TRACEPIPE_ES) and every test of storage/elasticsearch. A test that uses the engine
	# belongs in such a file; the others (kfake and embedded-store tests beside them) ran in the first pass.
	tests_of() { xargs -r grep -hoE '^func Test[A-Za-z0-9_]*\(' | sed -E 's/^func (Test[A-Za-z0-9_]*)\(/\1/' | sort -u; }
	keep=$({ printf '%s\n' "${es_files[@]}"; git ls-files ':(glob)storage/elasticsearch/*_test.go'; } | tests_of)
	skip=$(for p in "${es_pkgs[@]}"; do git ls-files ":(glob)${p#./}/*_test.go"; done | grep -vxF -f <(printf '%s\n' "${es_files[@]}") |
		tests_of | grep -vxF -f <(printf '%s\n' "$keep") | paste -sd'|' || true)
	skip_args=()
	[ -z "$skip" ] || skip_args=(-skip "^(${skip})\$")
	SWITCHED_FROM=${SWITCHED_FROM:-$TRACEPIPE_ES_ENGINE}
	phase "search engine -> $engine" env TRACEPIPE_SEARCH_ENGINE="$engine" "${SERVICES[@]}" up search || { test_rc=1; break; }
	eval "$("${SERVICES[@]}" env)"
	phase "go test -race ($engine)" run_tests "${TEST_LOG%.log}-$engine.log" "${skip_args[@]}" "${es_pkgs[@]}" || test_rc=1
done

if [ "$lint_rc" != 0 ]; then
	echo "lint failed (exit $lint_rc): see the lint phase above"
	exit "$lint_rc"
fi
exit "$test_rc"
