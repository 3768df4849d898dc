#!/usr/bin/env bash
# What can be proven of the images without a container engine: runs the Dockerfile's build command (the RUN line of
# its build stage: CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w') on the host for every binary
# under cmd/, then checks that each is statically linked (no ELF interpreter, no dynamic section) and that it starts
# as the image's user (uid/gid 65532, no home, empty environment, read-only working directory) far enough to print
# its usage. Prints each binary's size and build time.
#   bash deploy/docker/build-check.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
chmod 755 "$out"
fail=0
for dir in cmd/*/; do
	cmd=$(basename "$dir")
	t0=$(date +%s.%N)
	CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$out/$cmd" "./cmd/$cmd"
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	size=$(du -h "$out/$cmd" | cut -f1)
	if readelf -l "$out/$cmd" | grep -q 'INTERP' || readelf -d "$out/$cmd" 2>/dev/null | grep -q 'NEEDED'; then
		echo "FAIL $cmd: dynamically linked"
		fail=1
		continue
	fi
	# As the image runs it: uid 65532, no supplementary groups, an empty environment, from a directory it cannot
	# write. `-h` must print the usage (exit 0 or 2, as flag.ExitOnError does) and not fail for want of anything.
	if [ "$cmd" = tracepipe ]; then args=(version); else args=(-h); fi
	rc=0
	usage=$(cd / && env -i setpriv --reuid=65532 --regid=65532 --clear-groups "$out/$cmd" "${args[@]}" 2>&1) || rc=$?
	if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then
		echo "FAIL $cmd: exit $rc as uid 65532: $(head -n 3 <<<"$usage")"
		fail=1
		continue
	fi
	echo "ok   $cmd: static, $size, built in ${secs}s, starts as uid 65532: $(head -n 1 <<<"$usage")"
done
exit $fail
