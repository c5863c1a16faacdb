#!/usr/bin/env bash
# node.sh up|down [DIR]: a single-node Kubernetes cluster on this machine, for trying the add-on
# on a real kubelet by hand ('make node-up', 'make node-down'). It is the recipe the node suite
# (test/node, issue 22) is being built from; run it as root, after 'make node-binaries'.
#
# Everything runs in the network namespace tcr-node: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, the kubelet and kube-proxy. Its only
# interfaces are lo and a veth pair whose both ends stay inside (the node IP 10.254.0.1 is on
# one end; the kubelet refuses a loopback node IP and the kernel has no dummy interface), so no
# packet of the cluster, a Pod's or a Service's, can leave it; kube-proxy's iptables rules are
# that namespace's. There is no masquerade, and the chain TCR-NODE-EGRESS, first in FORWARD of
# the filter and mangle tables (inserted again once kube-proxy has put its own rules there),
# drops whatever a Pod sends to an address that is neither a Pod's nor the node's. containerd
# and the kubelet also run in a mount namespace of their own, where /etc/hosts is the scratch
# file DIR/hosts (what the hosts-updater DaemonSet edits), /etc/resolv.conf is empty (no resolver
# could answer there) and /run/containerd a tmpfs. With NODE_OWNER=<pid>, a watcher of its own
# session runs 'down' once that process is gone, however it ended (the node suite's TestMain).
# 'down' stops every process, container processes included, removes the
# kubepods cgroups, the namespace and DIR, and puts back the sysctls the kubelet and the bridge
# plugin change.
#
#   kubeconfig: DIR/admin.kubeconfig, used from inside the namespace:
#   ip netns exec tcr-node kubectl --kubeconfig DIR/admin.kubeconfig get nodes
set -euo pipefail
cmd=${1:?usage: node.sh up|down|restart-kubelet [DIR [KUBELET FLAGS...]]}
D=${2:-/tmp/tcr-node}
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
NS=tcr-node
NODE=tcr-node
IP=10.254.0.1
PAUSE=localhost/tcr-pause:1
# The sysctls the kubelet and the bridge plugin set, saved by up and restored by down.
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward"
# The machine's directories that are tmpfs in the node's mount namespace.
SCRATCH="/run/containerd /var/lib/kubelet /var/log/containers /var/lib/cni"

# ours prints the pids of the node: the namespace's processes, the containers' (in Pod namespaces
# of their own, orphaned once their shim is gone), the shims and the mount namespace's holder.
ours() {
	echo $(ip netns pids $NS 2>/dev/null) \
		$(cat $(find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null) /dev/null | sort -u) \
		$(pgrep -f "containerd-shim-runc-v2 .*$D/containerd.sock" || true) \
		$(cat "$D/holder.pid" 2>/dev/null | xargs -r ps -o pid= -p 2>/dev/null || true)
}

down() {
	local pids sig i h left w
	# The watcher becomes down itself (exec); any other caller stops it first.
	w=$(cat "$D/watcher.pid" 2>/dev/null || true)
	[[ -z $w || $w == "$$" ]] || kill "$w" 2>/dev/null || true
	for sig in TERM KILL; do
		pids=$(ours)
		[[ -z $pids ]] || kill -$sig $pids 2>/dev/null || true
		sleep 1
	done
	# A killed process is gone only once the kernel has reaped it.
	for ((i = 0; i < 20; i++)); do
		[[ -n $(ours) ]] || break
		sleep 0.5
	done
	for i in 1 2 3 4 5; do
		left=0
		for h in /sys/fs/cgroup/*/kubepods; do
			[[ -d $h ]] || continue
			find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
			[[ ! -d $h ]] || left=1
		done
		((left)) || break
		sleep 1
	done
	ip netns del $NS 2>/dev/null || true
	# The mount points of the scratch directories that up had to make.
	[[ ! -f $D/scratch.made ]] || xargs -r rmdir -p --ignore-fail-on-non-empty <"$D/scratch.made" 2>/dev/null || true
	[[ ! -f $D/sysctl.saved ]] || sysctl -q -p "$D/sysctl.saved" || true
	rm -rf "$D"
	# The node's programs are those that name DIR (other tests run etcd and kube-apiserver too);
	# dead processes that init has not reaped yet (state Z) are not left.
	echo "node: down (processes left: $(ps -eo stat=,args= | awk -v d="$D" '$1 !~ /^Z/ && index($0, d) &&
		$2 ~ /(etcd|kube-[a-z-]+|kubelet|containerd[a-z0-9-]*|sleep)$/' | wc -l), kubepods cgroups left: $(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | wc -l))"
}

# run NAME CMD...: starts CMD in the network namespace, logging to DIR/logs/NAME.log.
run() {
	local name=$1
	shift
	ip netns exec $NS "$@" >"$D/logs/$name.log" 2>&1 &
	echo $! >"$D/$name.pid"
}

# kubelet [FLAGS...]: starts the kubelet with the node's flags and FLAGS, in a session of its own:
# a restart's caller may kill its own process group when it ends (down finds the kubelet in the
# namespace anyway).
kubelet() {
	setsid nsenter -t "$(cat "$D/holder.pid")" -m -n "$BIN/kubelet" --kubeconfig "$D/kubelet.kubeconfig" --config "$D/kubelet.yaml" --root-dir "$D/kubelet" \
		--hostname-override $NODE --node-ip $IP --cert-dir "$D/kubelet/pki" "$@" >>"$D/logs/kubelet.log" 2>&1 &
}

# restart_kubelet [FLAGS...]: stops the kubelet and starts it again with FLAGS added, as an
# administrator does after adding flags (a credential provider's), and waits until the node is
# Ready again. Its Pods keep running meanwhile.
restart_kubelet() {
	local pid i
	pid=$(pgrep -f "^$BIN/kubelet --kubeconfig $D/kubelet.kubeconfig" || true)
	if [[ -n $pid ]]; then
		kill $pid
		for ((i = 0; i < 60; i++)); do
			kill -0 $pid 2>/dev/null || break
			sleep 0.5
		done
	fi
	kubelet "$@"
	# Ready stays True for a while after a kubelet stops; its own health endpoint tells.
	wait_for "the kubelet" 90 innode curl -sf http://127.0.0.1:10248/healthz
	echo "node: the kubelet runs with ${*:-no extra flags}"
}

# innode CMD...: runs CMD in the network and mount namespaces of containerd and the kubelet.
innode() { nsenter -t "$(cat "$D/holder.pid")" -m -n "$@"; }

kubeconfig() { # user
	cat >"$D/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://$IP:6443", certificate-authority: $D/pki/ca.crt}}]
users: [{name: $1, user: {client-certificate: $D/pki/$1.crt, client-key: $D/pki/$1.key}}]
contexts: [{name: node, context: {cluster: node, user: $1}}]
current-context: node
KC
}

# egress puts TCR-NODE-EGRESS first in FORWARD of the filter and mangle tables: forwarded
# packets to the Pod network or the node go on, every other is dropped.
egress() {
	local t
	for t in filter mangle; do
		ipt -t $t -N TCR-NODE-EGRESS 2>/dev/null || ipt -t $t -F TCR-NODE-EGRESS
		ipt -t $t -A TCR-NODE-EGRESS -d 10.244.0.0/16 -j RETURN
		ipt -t $t -A TCR-NODE-EGRESS -d $IP -j RETURN
		ipt -t $t -A TCR-NODE-EGRESS -j DROP
		while ipt -t $t -D FORWARD -j TCR-NODE-EGRESS 2>/dev/null; do :; done
		ipt -t $t -I FORWARD 1 -j TCR-NODE-EGRESS
	done
}
ipt() { ip netns exec $NS iptables -w "$@"; }

cert() { # name CN [O [SANs]]
	local p=$D/pki
	openssl req -newkey rsa:2048 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "/CN=$2${3:+/O=$3}" 2>/dev/null
	if [[ -n ${4:-} ]]; then echo "subjectAltName=$4" >"$p/$1.ext"; else : >"$p/$1.ext"; fi
	openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -out "$p/$1.crt" -days 2 -extfile "$p/$1.ext" 2>/dev/null
}

# wait_for WHAT SECONDS CMD...: retries CMD every second.
wait_for() {
	local what=$1 n=$2 i
	shift 2
	for ((i = 0; i < n; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	echo "node: $what did not come up within ${n}s; see $D/logs" >&2
	return 1
}

up() {
	for b in etcd kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr; do
		[[ -x $BIN/$b ]] || { echo "node: $BIN/$b is missing: run 'make node-binaries' first" >&2; exit 1; }
	done
	[[ $(id -u) == 0 ]] || { echo "node: run as root (network and mount namespaces, cgroups, iptables)" >&2; exit 1; }
	ip netns list | grep -qw $NS && { echo "node: namespace $NS exists: run 'make node-down' first" >&2; exit 1; }
	mkdir -p "$D"/{pki,etcd,logs,cni,certs.d,kubelet,pods}
	sysctl $SYSCTLS | sed 's/ = /=/' >"$D/sysctl.saved"
	trap 'echo "node: up failed; cleaning up"; down' ERR
	if [[ -n ${NODE_OWNER:-} ]]; then
		setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3"' watcher \
			"$NODE_OWNER" "$PWD/hack/node/node.sh" "$D" </dev/null >/dev/null 2>&1 &
		echo $! >"$D/watcher.pid"
	fi

	ip netns add $NS
	ip netns exec $NS ip link set lo up
	ip netns exec $NS ip link add node0 type veth peer name node1
	ip netns exec $NS ip addr add $IP/24 dev node0
	ip netns exec $NS ip link set node0 up
	ip netns exec $NS ip link set node1 up
	# The route the kubelet and kube-proxy take the node IP from, and that Service addresses
	# leave by before kube-proxy's rules rewrite them. It ends inside the namespace.
	ip netns exec $NS ip route add default dev node0
	egress

	local p=$D/pki
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 2 -subj /CN=tcr-node-ca 2>/dev/null
	cert apiserver kube-apiserver "" "IP:$IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	cert apiserver-kubelet kube-apiserver-kubelet-client system:masters
	cert admin admin system:masters
	cert kubelet system:node:$NODE system:nodes
	cert controller-manager system:kube-controller-manager
	cert scheduler system:kube-scheduler
	cert proxy system:kube-proxy
	openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
	openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
	for u in admin kubelet controller-manager scheduler proxy; do kubeconfig $u; done

	run etcd "$BIN/etcd" --data-dir "$D/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
	run kube-apiserver "$BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --secure-port 6443 --advertise-address $IP \
		--service-cluster-ip-range 10.96.0.0/24 --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
		--kubelet-preferred-address-types InternalIP --kubelet-client-certificate "$p/apiserver-kubelet.crt" --kubelet-client-key "$p/apiserver-kubelet.key" \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" --service-account-issuer https://kubernetes.default.svc.cluster.local
	local kubectl=(ip netns exec $NS kubectl --kubeconfig "$D/admin.kubeconfig")
	wait_for kube-apiserver 60 "${kubectl[@]}" get --raw /readyz
	# The controller-manager exits when it starts before the bootstrap RBAC lets it read its
	# authentication ConfigMap.
	wait_for "the bootstrap RBAC" 30 "${kubectl[@]}" -n kube-system get rolebinding system::extension-apiserver-authentication-reader
	run kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$D/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$D/controller-manager.kubeconfig" --authorization-kubeconfig "$D/controller-manager.kubeconfig" \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" --use-service-account-credentials \
		--leader-elect=false --bind-address 127.0.0.1 --cluster-cidr 10.244.0.0/16
	run kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$D/scheduler.kubeconfig" --authentication-kubeconfig "$D/scheduler.kubeconfig" \
		--authorization-kubeconfig "$D/scheduler.kubeconfig" --leader-elect=false --bind-address 127.0.0.1

	printf '127.0.0.1 localhost\n%s %s\n' $IP $NODE >"$D/hosts"
	: >"$D/resolv.conf" # Pods get no resolver: none could answer them here
	cat >"$D/cni/10-tcr.conflist" <<J
{"cniVersion": "1.0.0", "name": "tcr", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
J
	# restrict_oom_score_adj: this VM drops CAP_SYS_RESOURCE, and runc then fails every sandbox
	# writing oom_score_adj. Pod network namespaces under the state directory go with DIR.
	cat >"$D/containerd.toml" <<T
version = 3
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/containerd.sock"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$D/cni"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$D/certs.d"
T
	cat >"$D/kubelet.yaml" <<K
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$D/containerd.sock
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $p/ca.crt}}
authorization: {mode: Webhook}
address: $IP
readOnlyPort: 0
resolvConf: $D/resolv.conf
podCIDR: 10.244.0.0/24
podLogsDir: $D/pods
failSwapOn: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
K
	# The holder of the mount namespace: containerd and the kubelet join it (innode). It joins the
	# network namespace only after its mounts, so that /sys keeps the host's cgroup mounts
	# ('ip netns exec' would mount a new /sys without them).
	# The paths the kubelet, containerd and the CNI plugins write outside their configured
	# directories (container log links, the device-plugin socket, CNI's IP allocations and result
	# cache) are tmpfs there, gone with the namespace.
	for d in $SCRATCH; do [[ -e $d ]] || echo "$d"; done >"$D/scratch.made"
	unshare -m --propagation private sh -c "mount --bind '$D/hosts' /etc/hosts && mount --bind '$D/resolv.conf' /etc/resolv.conf &&
		for d in $SCRATCH; do mkdir -p \$d && mount -t tmpfs tmpfs \$d || exit 1; done &&
		exec nsenter --net=/run/netns/$NS sleep infinity" >"$D/logs/holder.log" 2>&1 &
	echo $! >"$D/holder.pid"
	# Joined once it is the namespace's: before its exec of nsenter, it is still in this one's.
	wait_for "the mount namespace" 10 sh -c "[ \"\$(ip netns identify \$(cat '$D/holder.pid'))\" = $NS ]"
	innode env PATH="$BIN:$PATH" "$BIN/containerd" --config "$D/containerd.toml" >"$D/logs/containerd.log" 2>&1 &
	wait_for containerd 30 innode "$BIN/ctr" -a "$D/containerd.sock" version
	CGO_ENABLED=0 go build -trimpath -o "$D/pause" ./hack/node/pause
	go run ./hack/node/imagetar $PAUSE "$D/pause" "$D/pause.tar" pause
	innode "$BIN/ctr" -a "$D/containerd.sock" -n k8s.io images import "$D/pause.tar" >/dev/null 2>&1
	kubelet
	cat >"$D/proxy.yaml" <<P
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $D/proxy.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: 10.244.0.0/16
conntrack: {maxPerCore: 0}
P
	run kube-proxy "$BIN/kube-proxy" --config "$D/proxy.yaml"
	wait_for "the node" 90 "${kubectl[@]}" wait --for=condition=Ready node/$NODE --timeout=1s
	wait_for "kube-proxy's rules" 30 sh -c "ip netns exec $NS iptables -w -S FORWARD | grep -q KUBE-FORWARD"
	egress
	trap - ERR
	echo "node: $NODE is Ready; kubectl: ip netns exec $NS kubectl --kubeconfig $D/admin.kubeconfig"
	echo "node: a registry's CA goes into $D/certs.d/<host:port>/hosts.toml; 'make node-down' stops it all"
}

case $cmd in
up) up ;;
down) down ;;
restart-kubelet) shift 2 && restart_kubelet "$@" ;;
*)
	echo "usage: node.sh up|down|restart-kubelet [DIR [KUBELET FLAGS...]]" >&2
	exit 2
	;;
esac
