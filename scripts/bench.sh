#!/usr/bin/env bash
# Benchmarks: `go test -run='^$' -bench=$BENCH -benchmem` over every package that has benchmarks, output also
# written to bench.out (gitignored). When a benchmark package reads the real services (internal/testenv or a
# TRACEPIPE_ variable in its tests), the services are started first and stopped afterwards, unless they were
# already running.
#
# Variables: BENCHTIME (default 1s; e.g. 200ms or 20000x), BENCH (regexp, default .), COUNT (default 1),
# PKGS (packages, default: every package with a Benchmark function), BENCH_OUT (default bench.out), CPU (-cpu list,
# default: go test's; per-core figures: CPU=1, e.g. the collector's
# `CPU=1 PKGS=./pipeline/collector BENCH=Collector BENCHTIME=3000x bash scripts/bench.sh`), BENCH_PRIVATE_ES (0: no
# private search engine for BenchmarkEngineCPU, see below).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-.}
COUNT=${COUNT:-1}
BENCH_OUT=${BENCH_OUT:-bench.out}
SERVICES=(bash deploy/local/services.sh)

# Directories (./x/y) whose test files define benchmarks.
bench_dirs() {
	git ls-files '*_test.go' 2>/dev/null | xargs -r grep -l '^func Benchmark' | xargs -r -n1 dirname | sort -u | sed 's#^#./#'
}

if [ -n "${PKGS:-}" ]; then
	read -r -a pkgs <<<"$PKGS"
else
	mapfile -t pkgs < <(bench_dirs)
fi
if ((${#pkgs[@]} == 0)); then
	echo "no benchmarks found"
	exit 0
fi

needs_services=
for p in "${pkgs[@]}"; do
	d=${p%/...}
	if [ -d "$d" ] && grep -qlE 'internal/testenv|TRACEPIPE_(KAFKA|ES|PROMETHEUS)\b' "$d"/*_test.go 2>/dev/null; then
		needs_services=1
	fi
done

if [ -n "$needs_services" ]; then
	before=" $("${SERVICES[@]}" running | tr '\n' ' ') "
	stop=()
	for s in kafka search prometheus; do [[ $before == *" $s "* ]] || stop+=("$s"); done
	if ((${#stop[@]})); then
		trap '"${SERVICES[@]}" down "${stop[@]}"' EXIT
		"${SERVICES[@]}" up
	fi
	eval "$("${SERVICES[@]}" env)"
fi

# BenchmarkEngineCPU (storage/elasticsearch) measures the search engine's own CPU, which other users of a shared
# node would blur: unless TRACEPIPE_ES_BENCH names a node (or BENCH_PRIVATE_ES=0), a private node is started for the
# run (its own data directory, HTTP port BENCH_PRIVATE_ES_PORT, default 9251) and stopped afterwards.
if [ -n "$needs_services" ] && [ -z "${TRACEPIPE_ES_BENCH:-}" ] && [ "${BENCH_PRIVATE_ES:-1}" = 1 ] &&
	[[ " ${pkgs[*]} " == *" ./storage/elasticsearch"* ]] && echo BenchmarkEngineCPU | grep -qE -- "${BENCH%%/*}"; then
	es_port=${BENCH_PRIVATE_ES_PORT:-9251}
	private_es=(env TRACEPIPE_SERVICES_DIR="${TMPDIR:-/tmp}/tracepipe-bench-es" TRACEPIPE_ES_PORT="$es_port"
		TRACEPIPE_ES_TRANSPORT_PORT=$((es_port + 100)) bash deploy/local/services.sh)
	prev_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT\$/\1/")
	trap '"${private_es[@]}" down search; '"$prev_trap" EXIT
	"${private_es[@]}" up search
	export TRACEPIPE_ES_BENCH=http://127.0.0.1:$es_port
fi

{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version | cut -d' ' -f3-) $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "# go test -run='^\$' -bench='$BENCH' -benchmem -benchtime=$BENCHTIME -count=$COUNT ${CPU:+-cpu=$CPU }${pkgs[*]}"
} | tee "$BENCH_OUT"
go test -run='^$' -bench="$BENCH" -benchmem -benchtime="$BENCHTIME" -count="$COUNT" ${CPU:+-cpu="$CPU"} "${pkgs[@]}" 2>&1 | tee -a "$BENCH_OUT"
exit "${PIPESTATUS[0]}"
