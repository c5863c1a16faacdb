#!/usr/bin/env bash
# bench-ab.sh REF [ROUNDS [TCR-BENCH FLAGS...]]: the manager built from git revision REF against
# the one built from the working tree, in the same harness on the same machine, alternating
# (REF, tree, REF, tree, ...) so that a change in the machine's load falls on both.
#
# "No figure gets worse" compares a build with a figure recorded on another day, when the machine
# may have been quieter or busier; this compares the two builds in one sitting. Each run is
# bin/tcr-bench (built from the working tree) up to its new-namespaces phase, with a 5 s idle
# window; the harness is then stopped, since an older manager may not serve the webhooks of the
# later phases. Per run it prints the manager's CPU seconds during convergence (from
# /proc/PID/stat, between the harness's "Creating ImagePullSecret" and "Watching" lines), the
# convergence and rotation times, the new-namespace p99 and the peak RSS; at the end the median
# of each per build.
#
#   hack/bench-ab.sh ec9a97a 3                   # 1,000 namespaces, three rounds
#   hack/bench-ab.sh ec9a97a 2 -scale large      # 10,000 namespaces
#
# Builds go to a temporary directory (kept, with every run's logs, and named at the end).
set -euo pipefail

ref=${1:?usage: bench-ab.sh REF [ROUNDS [TCR-BENCH FLAGS...]]}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
cd "$(dirname "$0")/.."
GO=${GO:-go}
work=$(mktemp -d /tmp/bench-ab.XXXXXX)
build() { CGO_ENABLED=0 "$GO" build -trimpath -o "$1" ./cmd/manager; }

echo "Building bin/tcr-bench and the working tree's manager into $work/tree..." >&2
mkdir -p bin "$work/tree" "$work/ref"
CGO_ENABLED=0 "$GO" build -trimpath -o bin/ ./bench/cmd/tcr-bench
build "$work/tree/manager"
echo "Building $ref's manager into $work/ref..." >&2
trap 'git worktree remove --force "$work/src" 2>/dev/null || true' EXIT
git worktree add --detach --quiet "$work/src" "$ref"
(cd "$work/src" && build "$work/ref/manager")
git worktree remove --force "$work/src"

# An older manager may lack --metrics-secure (the harness passes --metrics-secure=false): its
# wrapper drops that argument.
for b in ref tree; do
	drop=
	help=$("$work/$b/manager" -h 2>&1 || true)
	grep -q -- -metrics-secure <<<"$help" || drop=--metrics-secure=false
	cat >"$work/$b/run" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do [ "\$a" = "$drop" ] || args+=("\$a"); done
exec $work/$b/manager "\${args[@]}"
EOF
	chmod +x "$work/$b/run"
done

cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
# seconds turns a Go duration of the harness ("5.392s", "1m2.5s", "850ms") into seconds.
seconds() { awk '{d = $1; s = 0; if (d ~ /ms$/) {sub(/ms$/, "", d); printf "%.4f\n", d / 1000; next} if (d ~ /m/) {split(d, p, "m"); s = p[1] * 60; d = p[2]} sub(/s$/, "", d); printf "%.2f\n", s + d}'; }
wait_for() { until grep -q "$1" "$2"; do kill -0 "$3" 2>/dev/null || return 1; sleep 0.1; done; }

echo "build round cpu.convergence_s convergence_s rotation_s newns.p99_ms rss.peak_mib" | tee "$work/results"
for i in $(seq 1 "$rounds"); do
	for b in ref tree; do
		d=$work/$b/run-$i
		mkdir -p "$d"
		bin/tcr-bench -engine=false -idle 5s -log-dir "$d/logs" -manager "$work/$b/run" "$@" >"$d/out" 2>"$d/err" &
		bench=$!
		wait_for "Creating ImagePullSecret" "$d/err" $bench || { cat "$d/err" >&2; exit 1; }
		pid=$(sed -n 's/.*Started .* (pid \([0-9]*\),.*/\1/p' "$d/err")
		start=$(cpu "$pid")
		wait_for "Watching the manager" "$d/err" $bench || { cat "$d/err" >&2; exit 1; }
		end=$(cpu "$pid")
		wait_for "Served new namespaces" "$d/err" $bench || { cat "$d/err" >&2; exit 1; }
		peak=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
		conv=$(sed -n 's/.*Converged in \(.*\)\.$/\1/p' "$d/err" | seconds)
		rot=$(sed -n 's/.*Rotated every Secret in \(.*\)\.$/\1/p' "$d/err" | seconds)
		p99=$(sed -n 's/.*Served new namespaces: .*p99 \(.*\)\.$/\1/p' "$d/err" | seconds | awk '{printf "%.1f", $1 * 1000}')
		kill -TERM $bench
		wait $bench 2>/dev/null || true
		echo "$b $i $(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", e - s}') $conv $rot $p99 $peak" | tee -a "$work/results"
	done
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for b in ref tree; do
	for col in 3 4 5 6 7; do
		m[$col]=$(awk -v b=$b -v c=$col '$1 == b {print $c}' "$work/results" | median)
	done
	echo "median $b ($([ $b = ref ] && echo "$ref" || echo "working tree")): cpu.convergence ${m[3]} s, convergence ${m[4]} s, rotation ${m[5]} s, newns.p99 ${m[6]} ms, rss.peak ${m[7]} MiB"
done
echo "Runs and logs: $work" >&2
