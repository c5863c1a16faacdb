package devcluster

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/engine"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
	"sigs.k8s.io/yaml"
)

// TestRunRunsTheWholeAddOn runs what 'make run' runs with no cluster, with the binaries built
// from the working tree, and checks its banner against the state it describes.
func TestRunRunsTheWholeAddOn(t *testing.T) {
	bins := testenv.Build(t, "./cmd/manager", "./cmd/hosts-updater")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := testenv.FreePort(t)
	dir := t.TempDir()
	var banner testenv.SyncBuffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Manager: bins["manager"], HostsUpdater: bins["hosts-updater"],
			Namespace: "tcr-assistant-system", WebhookPort: l, Dir: dir,
			Ready: func() { close(ready) },
		}, &banner)
	}()
	select {
	case <-ready:
	case err := <-done:
		require.FailNow(t, "Run ended before the banner", "%v\n%s", err, banner.String())
	case <-time.After(3 * time.Minute):
		require.FailNow(t, "no banner after 3 minutes", banner.String())
	}
	text := banner.String()

	// The bad rule was refused by the manager's webhook, with the engine's message (kubectl
	// prints the webhook's field errors as "is invalid"), and the refusal leaks no credential.
	var bad tcrv1.ImagePullSecret
	require.NoError(t, yaml.Unmarshal([]byte(BadRule), &bad))
	errs, _ := engine.Validate(&bad.Spec)
	require.NotEmpty(t, errs)
	_, refusal, found := strings.Cut(text, "The webhook refuses a bad rule:\n")
	require.True(t, found, text)
	_, refusal, _ = strings.Cut(refusal, "\nEOF\n")
	refusal, _, _ = strings.Cut(refusal, "\n\n")
	assert.True(t, strings.HasPrefix(refusal, `The ImagePullSecret "bad-pattern" is invalid: `), refusal)
	for _, e := range errs {
		assert.Contains(t, refusal, e.Error())
	}
	assert.NotContains(t, refusal, bad.Spec.Docker.Password)
	// It was not created; the kubeconfig the banner prints reaches the control plane.
	m := regexp.MustCompile(`export KUBECONFIG=(\S+)`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	var got testenv.SyncBuffer
	err := testenv.Command{Path: kubectl, Args: []string{"--kubeconfig", m[1], "get", "ips", "bad-pattern"}, Output: &got}.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, got.String(), `imagepullsecrets.tcr.tencentcloudcr.com "bad-pattern" not found`)

	// The banner names the scratch hosts file, which the hosts-updater wrote the demo entry into.
	hostsFile := filepath.Join(dir, "hosts")
	assert.Contains(t, text, "The hosts-updater manages the scratch hosts file "+hostsFile)
	hosts, err := os.ReadFile(hostsFile)
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "127.0.0.1\tlocalhost\n")
	assert.Regexp(t, `(?m)^10\.0\.0\.2\s+demo\.tencentcloudcr\.com$`, string(hosts))
	assert.Contains(t, text, string(hosts))

	// The sample was distributed to every demo ServiceAccount.
	for _, ns := range DemoNamespaces {
		assert.Regexp(t, `(?m)^`+ns+`\s+tcr\.ipsimagepullsecret-sample\s`, text)
	}
	assert.Contains(t, text, "export KUBECONFIG=")

	// Ctrl-C stops everything.
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		require.FailNow(t, "Run did not stop")
	}
	assert.True(t, strings.HasSuffix(banner.String(), "Stopped the local control plane.\n"), banner.String())
}
