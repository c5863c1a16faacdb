package v1_test

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

func readSample(t *testing.T) *tcrv1.ImagePullSecret {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Root, "config", "samples", "imagepullsecret-sample.yaml"))
	require.NoError(t, err)
	var ips tcrv1.ImagePullSecret
	require.NoError(t, yaml.UnmarshalStrict(data, &ips))
	return &ips
}

func TestSampleFromTheOriginalDocReadsBackUnchanged(t *testing.T) {
	ctx := context.Background()
	sample := readSample(t)
	want := sample.Spec.DeepCopy()
	require.NoError(t, env.Client.Create(ctx, sample))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, sample) })

	var got tcrv1.ImagePullSecret
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "imagepullsecret-sample"}, &got))
	assert.Equal(t, *want, got.Spec)
	assert.Equal(t, "*", got.Spec.Namespaces)
	assert.Equal(t, "fanjiankong-bj.tencentcloudcr.com", got.Spec.Docker.Server)
	assert.Equal(t, "100012345678", got.Spec.Docker.Username)
	assert.Empty(t, got.Namespace, "the CRD is cluster-scoped")
	assert.Equal(t, "tcr.ipsimagepullsecret-sample", got.SecretName())
}

func TestKubectlShowsTheOriginalColumnsAndStatusNames(t *testing.T) {
	ctx := context.Background()
	ips := readSample(t)
	ips.Name = "kubectl-columns"
	require.NoError(t, env.Client.Create(ctx, ips))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, ips) })
	ips.Status = tcrv1.ImagePullSecretStatus{
		SecretsDesired: 10, SecretsSuccess: 10, SAsDesired: 47, SAsSuccess: 1,
		SecretUpdateSuccessful: []tcrv1.TargetUpdate{{
			NamespacedName: "default/tcr.ipskubectl-columns",
			UpdatedAt:      metav1.NewTime(time.Date(2021, 12, 1, 6, 47, 36, 0, time.UTC)),
		}},
		CredentialExpiresAt: &metav1.Time{Time: time.Date(2021, 12, 8, 0, 0, 0, 0, time.UTC)},
		Conditions: []metav1.Condition{{Type: tcrv1.ConditionCredentialVerified, Status: metav1.ConditionFalse,
			Reason: tcrv1.ReasonRejected, Message: "rejected", LastTransitionTime: metav1.Now()}},
	}
	require.NoError(t, env.Client.Status().Update(ctx, ips))

	for _, short := range []string{"ipss", "ips"} {
		out, _, err := env.Kubectl("", "get", short)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		assert.Equal(t, []string{"NAME", "NAMESPACES", "SERVICE-ACCOUNTS", "SECRETS-DESIRED", "SECRETS-SUCCESS"},
			strings.Fields(lines[0]), "kubectl get %s", short)
		assert.Contains(t, out, "kubectl-columns")
		assert.Regexp(t, regexp.MustCompile(`(?m)^kubectl-columns\s+\*\s+\*\s+10\s+10$`), out)
	}

	wide, _, err := env.Kubectl("", "get", "ipss", "-o", "wide")
	require.NoError(t, err)
	assert.Equal(t, []string{"NAME", "NAMESPACES", "SERVICE-ACCOUNTS", "SECRETS-DESIRED", "SECRETS-SUCCESS",
		"SAS-DESIRED", "SAS-SUCCESS", "READY", "CREDENTIAL", "EXPIRES", "AGE"}, strings.Fields(strings.SplitN(wide, "\n", 2)[0]))
	// The credential's verdict and expiry show only under -o wide (no Ready condition: blank).
	assert.Regexp(t, regexp.MustCompile(`(?m)^kubectl-columns\s+\*\s+\*\s+10\s+10\s+47\s+1\s+Rejected\s+2021-12-08T00:00:00Z\s+\S+$`), wide)

	desc, _, err := env.Kubectl("", "describe", "ipss", "kubectl-columns")
	require.NoError(t, err)
	for _, want := range []string{
		`Secrets Desired:\s+10\n`, `Secrets Success:\s+10\n`, `S As Desired:\s+47\n`, `S As Success:\s+1\n`,
		`Secret Update Successful:\n`, `Namespaced Name:\s+default/tcr.ipskubectl-columns\n`,
		`Updated At:\s+2021-12-01T06:47:36Z\n`, `Service Accounts:\s+\*\n`, `Namespaces:\s+\*\n`,
	} {
		assert.Regexp(t, regexp.MustCompile(want), desc)
	}
}

func TestKubectlExplainDescribesTheFields(t *testing.T) {
	out, _, err := env.Kubectl("", "explain", "ips.spec.docker.server")
	require.NoError(t, err)
	assert.Contains(t, out, "FIELD: server <string>")
	assert.Contains(t, out, "registry host name")

	out, _, err = env.Kubectl("", "explain", "ipss.status.sAsDesired")
	require.NoError(t, err)
	assert.Contains(t, out, "matching ServiceAccounts")
}

func TestNamesTooLongForTheSecretAreRefused(t *testing.T) {
	ctx := context.Background()
	ok := readSample(t)
	ok.Name = strings.Repeat("a", tcrv1.MaxNameLength)
	require.NoError(t, env.Client.Create(ctx, ok), "a %d-character name leaves a valid Secret name", tcrv1.MaxNameLength)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, ok) })

	tooLong := readSample(t)
	tooLong.Name = strings.Repeat("a", 247)
	err := env.Client.Create(ctx, tooLong)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metadata.name must be at most 246 characters: the distributed Secret is named 'tcr.ips' + name, and Secret names are limited to 253 characters")
}
