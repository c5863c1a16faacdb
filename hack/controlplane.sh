#!/usr/bin/env bash
# controlplane.sh BIN: puts etcd and kube-apiserver into BIN for envtest ('make controlplane').
#
# Fast path: the prebuilt envtest binaries of the Kubernetes version that hack/tools/controlplane
# pins, fetched by setup-envtest (tens of seconds). Fallback, when they cannot be fetched (no
# internet, no such release yet, a broken download): the from-source build of the pinned modules
# (seven to nine minutes on two cores). Which path was taken is printed.
#
# Environment (the Makefile passes them):
#   GO                     the go command
#   SETUP_ENVTEST_VERSION  the setup-envtest module version (installed into BIN)
#   ENVTEST_INDEX          setup-envtest's release index URL; empty: its default; "none": skip
#   ENVTEST_PROBE_TIMEOUT  seconds allowed to read the index and find the release (default 15):
#                          offline, the fallback is decided within it
#   ENVTEST_FETCH_TIMEOUT  seconds allowed to download and unpack the release (default 600)
set -euo pipefail

bin=${1:?usage: controlplane.sh BIN}
cd "$(dirname "$0")/.."
GO=${GO:-go}
module=hack/tools/controlplane
k8s=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes v\([0-9.]*\)$/\1/p' "$module/go.mod" | head -n 1)
probe_timeout=${ENVTEST_PROBE_TIMEOUT:-15}
fetch_timeout=${ENVTEST_FETCH_TIMEOUT:-600}
start=$SECONDS
mkdir -p "$bin"

# prebuilt fetches the release into a scratch store and copies the two binaries into BIN (and
# kubectl, when BIN has none: the Makefile builds it from source otherwise). It fails without
# touching BIN.
prebuilt() {
	if [[ ${ENVTEST_INDEX:-} == none ]]; then
		echo "ENVTEST_INDEX=none"
		return 1
	fi
	[[ -n $k8s ]] || { echo "no k8s.io/kubernetes version in $module/go.mod"; return 1; }
	local setup="$bin/setup-envtest"
	if [[ ! -x $setup ]]; then
		# Generous: on a busy machine with an empty build cache this compiles the standard
		# library too, and a timeout here would fall back to the far longer build.
		GOBIN="$bin" timeout 1200 "$GO" install "sigs.k8s.io/controller-runtime/tools/setup-envtest@${SETUP_ENVTEST_VERSION:?}" ||
			{ echo "installing setup-envtest ${SETUP_ENVTEST_VERSION} failed"; return 1; }
	fi
	local args=(--bin-dir "$store")
	[[ -z ${ENVTEST_INDEX:-} ]] || args+=(--index "$ENVTEST_INDEX")
	# The probe reads only the index: offline it fails at once (or at the timeout when the
	# network drops packets), before any download starts.
	local listed rc=0
	listed=$(timeout "$probe_timeout" "$setup" list "$k8s" "${args[@]}" 2>&1) || rc=$?
	if ((rc == 124)); then
		echo "the release index did not answer within ${probe_timeout}s"
		return 1
	elif ((rc != 0)); then
		echo "the release index could not be read: $(tail -n 1 <<<"$listed")"
		return 1
	fi
	grep -q "v$k8s" <<<"$listed" || { echo "the index has no envtest release v$k8s for this platform"; return 1; }
	local dir
	dir=$(timeout "$fetch_timeout" "$setup" use "$k8s" "${args[@]}" -p path 2>"$store/use.log") ||
		{ echo "fetching envtest v$k8s failed: $(tail -n 1 "$store/use.log")"; return 1; }
	"$dir/kube-apiserver" --version >/dev/null || { echo "the fetched kube-apiserver does not run here"; return 1; }
	install -m 0755 "$dir/etcd" "$dir/kube-apiserver" "$bin/" || return 1
	if [[ ! -e $bin/kubectl && -x $dir/kubectl ]]; then
		install -m 0755 "$dir/kubectl" "$bin/" || return 1
	fi
}

store=$(mktemp -d)
trap 'chmod -R u+w "$store" 2>/dev/null; rm -rf "$store"' EXIT
if why=$(prebuilt); then
	echo "controlplane: prebuilt envtest binaries v$k8s (setup-envtest) in $bin, in $((SECONDS - start))s"
else
	echo "controlplane: no prebuilt envtest binaries (${why##*$'\n'}), decided in $((SECONDS - start))s;"
	echo "controlplane: building etcd and kube-apiserver v$k8s from source into $bin (seven to nine minutes the first time)..."
	(cd "$module" && "$GO" build -trimpath -o "$bin/" ./etcd k8s.io/kubernetes/cmd/kube-apiserver)
	echo "controlplane: built from source in $((SECONDS - start))s"
fi
touch "$bin/etcd" "$bin/kube-apiserver"
