//go:build node

package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheNodeIsSealed: every program of the node runs in this network namespace, whose only
// interfaces are lo and the veth pair both ends of which are inside, and forwarded traffic to
// anything but a Pod or the node is dropped first in FORWARD of the filter and mangle tables,
// ahead of kube-proxy's rules. So no packet of a Pod or a Service leaves the machine.
func TestTheNodeIsSealed(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	for _, prog := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "kubelet"} {
		pids := pidsOf(t, prog)
		require.NotEmpty(t, pids, "%s is not running", prog)
		for _, pid := range pids {
			ns, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
			require.NoError(t, err)
			assert.Equal(t, self, ns, "%s (pid %d) is in another network namespace", prog, pid)
		}
	}

	links := run(t, "ip", "-o", "link", "show")
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(links), "\n") {
		f := strings.Fields(l)
		names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
	}
	for _, n := range names {
		if n != "lo" && n != "node0" && n != "node1" && n != "cni0" && !strings.HasPrefix(n, "veth") {
			t.Errorf("interface %s in the node's namespace: %s", n, links)
		}
	}

	for _, table := range []string{"filter", "mangle"} {
		rules := strings.Split(run(t, "iptables", "-w", "-t", table, "-S", "FORWARD"), "\n")
		require.GreaterOrEqual(t, len(rules), 2)
		assert.Equal(t, "-A FORWARD -j TCR-NODE-EGRESS", rules[1], "the first rule of FORWARD (%s)", table)
		assert.Equal(t, []string{
			"-N TCR-NODE-EGRESS",
			"-A TCR-NODE-EGRESS -d 10.244.0.0/16 -j RETURN",
			"-A TCR-NODE-EGRESS -d " + nodeIP + "/32 -j RETURN",
			"-A TCR-NODE-EGRESS -j DROP",
		}, strings.Split(strings.TrimSpace(run(t, "iptables", "-w", "-t", table, "-S", "TCR-NODE-EGRESS")), "\n"), table)
	}
	nat := run(t, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING")
	assert.NotContains(t, nat, "CNI-", "the bridge plugin masquerades Pod traffic")
}

// pidsOf returns the pids of the node's processes of prog: those whose command line names the
// node's directory (other tests on this machine run their own etcd and kube-apiserver).
func pidsOf(t *testing.T, prog string) []int {
	t.Helper()
	pids, err := procs(func(exe, cmdline string) bool {
		return filepath.Base(exe) == prog && strings.Contains(cmdline, nodeDir())
	})
	require.NoError(t, err)
	return pids
}
