package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

const (
	previewServer   = "preview.tencentcloudcr.com"
	previewPassword = "Pw-preview-7c1d"
	stalePassword   = "Pw-preview-STALE-0e42"
)

// previewSpec is the spec of the ImagePullSecret "demo" of the fixture.
var previewSpec = tcrv1.ImagePullSecretSpec{
	Namespaces: "team-a, team-b, team-c, team-d, gone", ServiceAccounts: "default, deployer",
	Docker: tcrv1.DockerCredential{Server: previewServer, Username: user, Password: previewPassword},
}

// dockerConfigJSON is the data the controller writes for a login (controllers.renderDockerConfig).
func dockerConfigJSON(password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return []byte(`{"auths":{"` + previewServer + `":{"username":"` + user + `","password":"` + password + `","auth":"` + auth + `"}}}`)
}

// distributed is a Secret as the controller makes it for the ImagePullSecret name of uid.
func distributed(namespace, name string, uid types.UID, password string) *corev1.Secret {
	yes := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: tcrv1.SecretNamePrefix + name,
			Labels: map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret",
				Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(password)},
	}
}

func serviceAccount(namespace, name string, refs ...string) *corev1.ServiceAccount {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, r := range refs {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: r})
	}
	return sa
}

// startPreviewFixture starts a control plane holding the ImagePullSecret "demo" and a cluster
// with one namespace of each case the preview tells apart:
//
//	team-a  selected, no Secret yet                    create, both ServiceAccounts gain the reference
//	team-b  selected, our Secret with a stale password  update, deployer gains the reference
//	team-c  selected, a foreign Secret of that name     foreign, nothing is pointed at it
//	team-d  selected, our Secret up to date             keep
//	old     not selected, our Secret                    delete, default loses the reference
//	other   not selected, nothing                       not shown
//	gone    selected, terminating                       skipped
func startPreviewFixture(t *testing.T) *testenv.Env {
	t.Helper()
	env, err := testenv.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	c := env.Client

	ips := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "demo"}, Spec: previewSpec}
	require.NoError(t, c.Create(ctx, ips))
	ref := tcrv1.SecretNamePrefix + "demo"
	for _, ns := range []string{"team-a", "team-b", "team-c", "team-d", "old", "other", "gone"} {
		require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	objects := []client.Object{
		serviceAccount("team-a", "default"), serviceAccount("team-a", "deployer"), serviceAccount("team-a", "builder"),
		serviceAccount("team-b", "default", "registry-cred", ref), serviceAccount("team-b", "deployer"),
		distributed("team-b", "demo", ips.UID, stalePassword),
		serviceAccount("team-c", "default"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-c", Name: ref}, StringData: map[string]string{"token": "not-ours"}},
		serviceAccount("team-d", "default", ref),
		distributed("team-d", "demo", ips.UID, previewPassword),
		serviceAccount("old", "default", ref), distributed("old", "demo", ips.UID, previewPassword),
		serviceAccount("other", "default"),
		serviceAccount("gone", "default"),
	}
	for _, o := range objects {
		require.NoError(t, c.Create(ctx, o))
	}
	// This control plane has no namespace controller: a deleted namespace stays terminating.
	require.NoError(t, c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gone"}}))
	return env
}

// runPreview runs the plugin and checks that no password appears in what it prints.
func runPreview(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"preview"}, args...), &stdout, &stderr)
	for _, p := range []string{previewPassword, stalePassword, base64.StdEncoding.EncodeToString([]byte(user + ":" + previewPassword))} {
		assert.NotContains(t, stdout.String()+stderr.String(), p, "kubectl ips preview printed a password")
	}
	return code, stdout.String(), stderr.String()
}

const demoTable = `ImagePullSecret demo (in the cluster)
NAMESPACE   SECRET    SERVICE-ACCOUNTS
old         delete    -default
team-a      create    +default,+deployer
team-b      update    default,+deployer
team-c      foreign   default
team-d      keep      default
secretsDesired: 4, sAsDesired: 6; Secrets: create 1, delete 1, foreign 1, keep 1, update 1; references: +3 -1; namespaces: 11 read, 1 terminating skipped
SecretNotOwned: Secret team-c/tcr.ipsdemo exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own
`

// recordRequests records every request the command makes, as "METHOD path?query", until the test
// ends; the function it returns takes those made since its last call.
func recordRequests(t *testing.T) func() []string {
	var mu sync.Mutex
	var requests []string
	wrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			requests = append(requests, req.Method+" "+req.URL.RequestURI())
			mu.Unlock()
			return rt.RoundTrip(req)
		})
	}
	t.Cleanup(func() { wrapTransport = nil })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		taken := requests
		requests = nil
		return taken
	}
}

func TestPreview(t *testing.T) {
	env := startPreviewFixture(t)
	kubeconfig := []string{"--kubeconfig", env.Kubeconfig}

	takeRequests := recordRequests(t)

	t.Run("NAME reads the CR from the cluster", func(t *testing.T) {
		code, out, errOut := runPreview(t, append([]string{"demo"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Empty(t, errOut)
		assert.Equal(t, demoTable, out)
	})

	t.Run("-f of a CR in the cluster is previewed as its update", func(t *testing.T) {
		cr := crYAML("demo", previewServer, previewPassword)
		cr = strings.Replace(cr, `namespaces: "*"`, `namespaces: "team-a, team-b, team-c, team-d, gone"`+"\n  serviceAccounts: \"default, deployer\"", 1)
		code, out, errOut := runPreview(t, append([]string{"-f", writeFile(t, cr)}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, demoTable, out)
	})

	t.Run("-f - reads standard input", func(t *testing.T) {
		cr := strings.Replace(crYAML("demo", previewServer, previewPassword), `namespaces: "*"`,
			`namespaces: "team-a, team-b, team-c, team-d, gone"`+"\n  serviceAccounts: \"default, deployer\"", 1)
		stdin, err := os.Open(writeFile(t, cr))
		require.NoError(t, err)
		defer stdin.Close()
		saved := os.Stdin
		os.Stdin = stdin
		defer func() { os.Stdin = saved }()
		code, out, errOut := runPreview(t, append([]string{"-f", "-"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, demoTable, out)
	})

	t.Run("only get and list, a page of 500 at a time", func(t *testing.T) {
		takeRequests()
		code, _, errOut := runPreview(t, append([]string{"demo"}, kubeconfig...)...)
		require.Equal(t, 0, code, errOut)
		requests := takeRequests()
		lists := 0
		for _, r := range requests {
			assert.True(t, strings.HasPrefix(r, "GET "), "a request that is not a read: %s", r)
			assert.NotContains(t, r, "/pods", "a rule without recoverPods needs no Pod")
			if strings.Contains(r, "/namespaces?") || strings.Contains(r, "/serviceaccounts?") || strings.Contains(r, "/secrets?") {
				lists++
				assert.Contains(t, r, "limit=500", "a list without a page size: %s", r)
			}
		}
		assert.Equal(t, 3, lists, "%v", requests)
		assert.Contains(t, requests, "GET /api/v1/secrets?fieldSelector=metadata.name%3Dtcr.ipsdemo&limit=500")
	})

	t.Run("pages are followed to the end", func(t *testing.T) {
		previewPageSize = 2
		defer func() { previewPageSize = 500 }()
		takeRequests()
		code, out, errOut := runPreview(t, append([]string{"demo"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, demoTable, out)
		requests := takeRequests()
		continued := 0
		for _, r := range requests {
			if strings.Contains(r, "continue=") {
				continued++
			}
		}
		// 11 namespaces in pages of 2 need 5 more pages; 11 ServiceAccounts too.
		assert.GreaterOrEqual(t, continued, 10, "%v", requests)
	})

	t.Run("-o json", func(t *testing.T) {
		code, out, errOut := runPreview(t, append([]string{"demo", "-o", "json"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.JSONEq(t, demoJSON, out)
		// The document's field order is fixed.
		assert.True(t, strings.HasPrefix(out, "{\n  \"apiVersion\": \""+previewAPIVersion+"\",\n  \"kind\": \""+previewKind+"\",\n  \"items\": ["), out)
	})

	t.Run("-o yaml", func(t *testing.T) {
		code, out, errOut := runPreview(t, append([]string{"demo", "-o", "yaml"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		want, err := yaml.JSONToYAML([]byte(demoJSON))
		require.NoError(t, err)
		assert.Equal(t, string(want), out)
	})

	t.Run("-f of a new CR: warnings, and Secrets of an earlier incarnation are foreign", func(t *testing.T) {
		ctx := context.Background()
		require.NoError(t, env.Client.Create(ctx, distributed("team-a", "newcomer", "uid-of-a-deleted-incarnation", previewPassword)))
		cr := strings.Replace(crYAML("newcomer", previewServer, previewPassword), `namespaces: "*"`, `namespaces: "team-a, team-b, team-a"`, 1)
		code, out, errOut := runPreview(t, append([]string{"-f", writeFile(t, cr)}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret newcomer (not in the cluster: previewed as new)
Warning: spec.namespaces: "team-a" is listed more than once; the duplicate is ignored
NAMESPACE   SECRET    SERVICE-ACCOUNTS
team-a      foreign   builder,default,deployer
team-b      create    +default,+deployer
secretsDesired: 2, sAsDesired: 5; Secrets: create 1, foreign 1; references: +2 -0; namespaces: 11 read, 1 terminating skipped
SecretNotOwned: Secret team-a/tcr.ipsnewcomer exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own
`, out)
	})

	t.Run("-f with a CR the webhook refuses", func(t *testing.T) {
		bad := strings.Replace(crYAML("bad", "https://"+previewServer, previewPassword), `namespaces: "*"`, `namespaces: "team-*"`, 1)
		file := writeFile(t, crYAML("good", previewServer, previewPassword)+"---\n"+bad)
		code, out, errOut := runPreview(t, append([]string{"-f", file}, kubeconfig...)...)
		assert.Equal(t, 2, code)
		assert.Equal(t, `bad: the admission webhook would refuse it: ImagePullSecret.tcr.tencentcloudcr.com "bad" is invalid: [spec.namespaces: Invalid value: "team-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression, spec.docker.server: Invalid value: "https://preview.tencentcloudcr.com": must be a host name without a scheme: write "preview.tencentcloudcr.com"]`+"\n", errOut)
		// The valid one is still previewed; the refused one shows its refusal.
		assert.True(t, strings.HasPrefix(out, "ImagePullSecret good (not in the cluster: previewed as new)\n"), out)
		assert.True(t, strings.HasSuffix(out, "\nImagePullSecret bad (not in the cluster: previewed as new)\nRefused: "+strings.TrimPrefix(strings.TrimSuffix(errOut, "\n"), "bad: the admission webhook would refuse it: ")+"\n"), out)
	})

	t.Run("NAME of a stored spec the webhook would refuse: read leniently", func(t *testing.T) {
		// Stored while the webhook was off (this control plane has none).
		legacy := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Spec: previewSpec}
		legacy.Spec.Namespaces = "team-*, team-a"
		require.NoError(t, env.Client.Create(context.Background(), legacy))
		code, out, errOut := runPreview(t, append([]string{"legacy"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret legacy (in the cluster)
Refused: ImagePullSecret.tcr.tencentcloudcr.com "legacy" is invalid: spec.namespaces: Invalid value: "team-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression
Note: the admission webhook would refuse this spec today (condition Valid=False); the controller reads it leniently
NAMESPACE   SECRET   SERVICE-ACCOUNTS
team-a      create   +default,+deployer
secretsDesired: 1, sAsDesired: 2; Secrets: create 1; references: +2 -0; namespaces: 11 read, 1 terminating skipped
`, out)
	})

	t.Run("NAME of a CR being deleted", func(t *testing.T) {
		ctx := context.Background()
		leaving := &tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "leaving", Finalizers: []string{tcrv1.Finalizer}}, Spec: previewSpec}
		require.NoError(t, env.Client.Create(ctx, leaving))
		require.NoError(t, env.Client.Create(ctx, distributed("team-a", "leaving", leaving.UID, previewPassword)))
		require.NoError(t, env.Client.Delete(ctx, leaving))
		code, out, errOut := runPreview(t, append([]string{"leaving"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret leaving (in the cluster)
Note: it is being deleted: its finalizer removes its Secrets and the references to them
NAMESPACE   SECRET   SERVICE-ACCOUNTS
team-a      delete   <none>
secretsDesired: 0, sAsDesired: 0; Secrets: delete 1; references: +0 -0; namespaces: 11 read, 1 terminating skipped
`, out)
	})

	// Last: it adds the controller's namespace to the cluster.
	t.Run("-f with a passwordSecretRef", func(t *testing.T) {
		ctx := context.Background()
		const ns = "tcr-assistant-system"
		require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		password := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tcr-password"},
			Data:       map[string][]byte{"password": []byte(previewPassword)},
		}
		require.NoError(t, env.Client.Create(ctx, password))
		cr := `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata: {name: demo}
spec:
  namespaces: "team-a, team-b, team-c, team-d, gone"
  serviceAccounts: "default, deployer"
  docker:
    server: ` + previewServer + `
    username: "` + user + `"
    passwordSecretRef: {name: tcr-password, key: password}
`
		file := writeFile(t, cr)

		// Not a password source yet: the webhook warns, and our Secrets cannot be compared.
		code, out, errOut := runPreview(t, append([]string{"-f", file}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret demo (in the cluster)
Warning: spec.docker.passwordSecretRef: Secret tcr-assistant-system/tcr-password may not be a password source: it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; nothing will be distributed from it
Note: Secret tcr-assistant-system/tcr-password named by docker.passwordSecretRef may not be a password source: it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; the controller distributes nothing from it, so whether existing Secrets are up to date is unknown
NAMESPACE   SECRET    SERVICE-ACCOUNTS
old         delete    -default
team-a      create    +default,+deployer
team-b      unknown   default,+deployer
team-c      foreign   default
team-d      unknown   default
secretsDesired: 4, sAsDesired: 6; Secrets: create 1, delete 1, foreign 1, unknown 2; references: +3 -1; namespaces: 12 read, 1 terminating skipped
SecretNotOwned: Secret team-c/tcr.ipsdemo exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own
`, out)

		// Opted in: the password is read, and the preview is the one of the inline password.
		password.Labels = map[string]string{tcrv1.PasswordSourceLabel: "true"}
		require.NoError(t, env.Client.Update(ctx, password))
		code, out, errOut = runPreview(t, append([]string{"-f", file}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, strings.Replace(demoTable, "11 read", "12 read", 1), out)
	})

	t.Run("NAME of a missing CR", func(t *testing.T) {
		code, out, errOut := runPreview(t, append([]string{"missing"}, kubeconfig...)...)
		assert.Equal(t, 2, code)
		assert.Empty(t, out)
		assert.Equal(t, `missing: no ImagePullSecret "missing" in the cluster (to preview one that is not applied yet, use -f FILE)`+"\n", errOut)
	})
}

const demoJSON = `{
  "apiVersion": "preview.kubectl-ips.tcr.tencentcloudcr.com/v1alpha1",
  "kind": "ImagePullSecretPreviewList",
  "items": [{
    "name": "demo",
    "inCluster": true,
    "admission": {"allowed": true},
    "summary": {
      "secretsDesired": 4, "sAsDesired": 6,
      "secrets": {"create": 1, "delete": 1, "foreign": 1, "keep": 1, "update": 1},
      "referencesAdded": 3, "referencesRemoved": 1,
      "namespacesRead": 11, "namespacesTerminating": 1
    },
    "namespaces": [
      {"name": "old", "selected": false, "secret": "delete", "removeReferences": ["default"]},
      {"name": "team-a", "selected": true, "secret": "create", "serviceAccounts": ["default", "deployer"], "addReferences": ["default", "deployer"]},
      {"name": "team-b", "selected": true, "secret": "update", "serviceAccounts": ["default", "deployer"], "addReferences": ["deployer"]},
      {"name": "team-c", "selected": true, "secret": "foreign", "serviceAccounts": ["default"], "failures": [{"reason": "SecretNotOwned",
        "message": "Secret team-c/tcr.ipsdemo exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own"}]},
      {"name": "team-d", "selected": true, "secret": "keep", "serviceAccounts": ["default"]}
    ]
  }]
}`

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestPreviewAsReadOnlyUser runs the preview as a user bound only to a ClusterRole of get and
// list: it needs nothing more, and could not write if it tried.
func TestPreviewAsReadOnlyUser(t *testing.T) {
	env := startPreviewFixture(t)
	ctx := context.Background()
	require.NoError(t, env.Client.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tcr-assistant-preview"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "serviceaccounts", "secrets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{tcrv1.GroupVersion.Group}, Resources: []string{"imagepullsecrets"}, Verbs: []string{"get", "list"}},
		},
	}))
	require.NoError(t, env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tcr-assistant-preview"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tcr-assistant-preview"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "preview-reader"}},
	}))
	cfg, err := env.AddUser("preview-reader")
	require.NoError(t, err)
	kubeconfig := testenv.WriteKubeconfig(t, cfg)

	code, out, errOut := runPreview(t, "demo", "--kubeconfig", kubeconfig)
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, demoTable, out)

	// The same user cannot write: had the preview tried, it would have failed.
	readerClient, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	require.NoError(t, err)
	err = readerClient.Create(ctx, serviceAccount("team-a", "probe"))
	assert.ErrorContains(t, err, `serviceaccounts is forbidden: User "preview-reader" cannot create resource "serviceaccounts"`)
}

func TestPreviewInvalidInput(t *testing.T) {
	code, out, errOut := runPreview(t)
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "Usage: kubectl ips preview (-f FILE | NAME...) [flags]")

	code, _, errOut = runPreview(t, "-f", "cr.yaml", "demo")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "Usage: kubectl ips preview")

	code, _, errOut = runPreview(t, "demo", "-o", "wide")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "Usage: kubectl ips preview")

	notIPS := writeFile(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n")
	code, _, errOut = runPreview(t, "-f", notIPS)
	assert.Equal(t, 2, code)
	assert.Equal(t, notIPS+": document 1 is a v1 Secret, not an ImagePullSecret of tcr.tencentcloudcr.com/v1\n", errOut)

	// No cluster: exit 1.
	empty := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600))
	code, _, errOut = runPreview(t, "demo", "--kubeconfig", empty)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "invalid configuration")
}

// pendingPod is a Pod of the ServiceAccount sa whose containers wait with the given reasons, by
// image; an image whose name starts with "init:" is an init container's. With no kubelet, the
// test writes the status itself.
type pendingPod struct {
	namespace, name, sa string
	controller          *metav1.OwnerReference
	pullSecrets         []string
	phase               corev1.PodPhase // Pending when empty
	waiting             map[string]string
}

func (p pendingPod) create(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: p.name},
		Spec:       corev1.PodSpec{ServiceAccountName: p.sa},
	}
	if p.controller != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*p.controller}
	}
	for _, s := range p.pullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	var statuses, initStatuses []corev1.ContainerStatus
	for i, image := range slices.Sorted(maps.Keys(p.waiting)) {
		name := fmt.Sprintf("c%d", i)
		status := corev1.ContainerStatus{Name: name, Image: image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: p.waiting[image], Message: "pull failed"}}}
		if initImage, ok := strings.CutPrefix(image, "init:"); ok {
			status.Image = initImage
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: name, Image: initImage})
			initStatuses = append(initStatuses, status)
		} else {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: image})
			statuses = append(statuses, status)
		}
	}
	require.NoError(t, c.Create(ctx, pod))
	pod.Status.Phase = cmp.Or(p.phase, corev1.PodPending)
	pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses = statuses, initStatuses
	require.NoError(t, c.Status().Update(ctx, pod))
}

func controlledBy(kind, name string) *metav1.OwnerReference {
	apiVersion := "apps/v1"
	if kind == "Job" {
		apiVersion = "batch/v1"
	}
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true)}
}

// recoveryTable is what `kubectl ips preview demo` adds to demoTable once demo has recoverPods,
// over the Pods of TestPreviewRecoverPods.
const recoveryTable = `POD                     RECOVERY   CONTROLLER            REASON
team-a/web-5d8f-abcde   evict      ReplicaSet/web-5d8f   <none>
team-d/db-0             evict      StatefulSet/db        <none>
team-a/bare             stuck      <none>                BarePod
team-b/own-7c9b-xyz12   stuck      ReplicaSet/own-7c9b   OwnPullSecrets
recoverPods: evict 2, stuck 2; Pending Pods: 11 read
`

// TestPreviewRecoverPods previews recoverPods through the controller's own recovery plan over the
// fixture's namespaces and Pending Pods of each case it tells apart, and proves that a rule
// without recoverPods makes no Pod request at all.
func TestPreviewRecoverPods(t *testing.T) {
	env := startPreviewFixture(t)
	ctx := context.Background()
	kubeconfig := []string{"--kubeconfig", env.Kubeconfig}
	const image = previewServer + "/team/web:1.0"
	ref := tcrv1.SecretNamePrefix + "demo"
	pods := []pendingPod{
		// Evicted: owned by a controller, waiting for an image of the rule's registry.
		{namespace: "team-a", name: "web-5d8f-abcde", sa: "default", controller: controlledBy("ReplicaSet", "web-5d8f"),
			waiting: map[string]string{image: "ErrImagePull"}},
		{namespace: "team-d", name: "db-0", sa: "default", controller: controlledBy("StatefulSet", "db"),
			waiting: map[string]string{"init:" + previewServer + "/team/migrate:2": "ImagePullBackOff", image: "PodInitializing"}},
		// Stuck and reported.
		{namespace: "team-a", name: "bare", sa: "deployer", waiting: map[string]string{image: "ImagePullBackOff"}},
		{namespace: "team-b", name: "own-7c9b-xyz12", sa: "deployer", controller: controlledBy("ReplicaSet", "own-7c9b"),
			pullSecrets: []string{"registry-cred"}, waiting: map[string]string{image: "ErrImagePull"}},
		// Not listed: another registry (Docker Hub, and a host that only starts like the rule's).
		{namespace: "team-a", name: "hub-6f7d-qwert", sa: "default", controller: controlledBy("ReplicaSet", "hub-6f7d"),
			waiting: map[string]string{"nginx:1.27": "ErrImagePull"}},
		{namespace: "team-a", name: "lookalike-1", sa: "default", controller: controlledBy("Job", "lookalike"),
			waiting: map[string]string{previewServer + ".evil.example/team/web:1.0": "ErrImagePull"}},
		// Not listed: a ServiceAccount or namespace the rule does not select, a namespace whose
		// Secret is foreign (the controller never references it there), a Pod that lists the
		// Secret already (it fails for another reason), a Pod waiting for another reason, and one
		// that is not Pending (not even read).
		{namespace: "team-a", name: "builder-1", sa: "builder", controller: controlledBy("Job", "builder"),
			waiting: map[string]string{image: "ErrImagePull"}},
		{namespace: "other", name: "web-1", sa: "default", controller: controlledBy("ReplicaSet", "web"),
			waiting: map[string]string{image: "ErrImagePull"}},
		{namespace: "team-c", name: "web-1", sa: "default", controller: controlledBy("ReplicaSet", "web"),
			waiting: map[string]string{image: "ErrImagePull"}},
		{namespace: "team-b", name: "listed-1", sa: "default", controller: controlledBy("ReplicaSet", "listed"),
			pullSecrets: []string{ref}, waiting: map[string]string{image: "ErrImagePull"}},
		{namespace: "team-d", name: "config-1", sa: "default", controller: controlledBy("DaemonSet", "config"),
			waiting: map[string]string{image: "CreateContainerConfigError"}},
		{namespace: "team-a", name: "running-1", sa: "default", controller: controlledBy("ReplicaSet", "running"),
			phase: corev1.PodRunning, waiting: map[string]string{image: "ErrImagePull"}},
	}
	for _, p := range pods {
		p.create(t, env.Client)
	}

	takeRequests := recordRequests(t)
	podRequests := func() []string {
		var out []string
		for _, r := range takeRequests() {
			if strings.Contains(r, "/pods") {
				out = append(out, r)
			}
		}
		return out
	}

	t.Run("without recoverPods: no Pod section and no Pod request", func(t *testing.T) {
		podRequests()
		code, out, errOut := runPreview(t, append([]string{"demo"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, demoTable, out)
		assert.Empty(t, podRequests())
		code, out, errOut = runPreview(t, append([]string{"demo", "-o", "json"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.JSONEq(t, demoJSON, out)
		assert.Empty(t, podRequests())
	})

	// recoverPods on a CR of the file, the fixture's demo: previewed as its update.
	cr := strings.Replace(crYAML("demo", previewServer, previewPassword), `namespaces: "*"`,
		`namespaces: "team-a, team-b, team-c, team-d, gone"`+"\n  serviceAccounts: \"default, deployer\"\n  recoverPods: true", 1)
	file := writeFile(t, cr)

	t.Run("-f with recoverPods: the Pods it would evict and those it would leave stuck", func(t *testing.T) {
		podRequests()
		code, out, errOut := runPreview(t, append([]string{"-f", file}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Empty(t, errOut)
		assert.Equal(t, demoTable+recoveryTable, out)
		// One list of the Pending Pods, by field selector, a page at a time.
		assert.Equal(t, []string{"GET /api/v1/pods?fieldSelector=status.phase%3DPending&limit=500"}, podRequests())
	})

	t.Run("NAME with recoverPods, -o json", func(t *testing.T) {
		live := &tcrv1.ImagePullSecret{}
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "demo"}, live))
		live.Spec.RecoverPods = true
		require.NoError(t, env.Client.Update(ctx, live))
		podRequests()
		code, out, errOut := runPreview(t, append([]string{"demo", "-o", "json"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &doc))
		items := doc["items"].([]any)
		require.Len(t, items, 1)
		recovery, err := json.Marshal(items[0].(map[string]any)["recovery"])
		require.NoError(t, err)
		assert.JSONEq(t, `{
  "pendingPodsRead": 11,
  "evict": [
    {"namespacedName": "team-a/web-5d8f-abcde", "controller": "ReplicaSet/web-5d8f"},
    {"namespacedName": "team-d/db-0", "controller": "StatefulSet/db"}
  ],
  "stuck": [
    {"namespacedName": "team-a/bare", "reason": "BarePod"},
    {"namespacedName": "team-b/own-7c9b-xyz12", "controller": "ReplicaSet/own-7c9b", "reason": "OwnPullSecrets"}
  ]
}`, string(recovery))
		assert.Equal(t, []string{"GET /api/v1/pods?fieldSelector=status.phase%3DPending&limit=500"}, podRequests())

		// The table of the live CR is the one of the file.
		code, out, errOut = runPreview(t, append([]string{"demo"}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, demoTable+recoveryTable, out)
	})

	t.Run("Pods of many rules are read once, a page at a time", func(t *testing.T) {
		previewPageSize = 4
		defer func() { previewPageSize = 500 }()
		// A rule for Docker Hub, named by one of its aliases, and demo.
		other := strings.Replace(crYAML("other", "index.docker.io", previewPassword), `namespaces: "*"`,
			`namespaces: "team-a"`+"\n  serviceAccounts: default\n  recoverPods: true", 1)
		podRequests()
		code, out, errOut := runPreview(t, append([]string{"-f", writeFile(t, other+"---\n"+cr)}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret other (not in the cluster: previewed as new)
NAMESPACE   SECRET   SERVICE-ACCOUNTS
team-a      create   +default
secretsDesired: 1, sAsDesired: 1; Secrets: create 1; references: +1 -0; namespaces: 11 read, 1 terminating skipped
POD                     RECOVERY   CONTROLLER            REASON
team-a/hub-6f7d-qwert   evict      ReplicaSet/hub-6f7d   <none>
recoverPods: evict 1, stuck 0; Pending Pods: 11 read

`+demoTable+recoveryTable, out)
		// 11 Pending Pods in pages of 4: three requests, the two last continuing the first.
		got := podRequests()
		require.Len(t, got, 3, "%v", got)
		assert.Equal(t, "GET /api/v1/pods?fieldSelector=status.phase%3DPending&limit=4", got[0])
		for _, r := range got[1:] {
			assert.Contains(t, r, "continue=")
		}
	})

	t.Run("recoverPods with nothing stuck: the count line only", func(t *testing.T) {
		calm := strings.Replace(crYAML("calm", "calm.tencentcloudcr.com", previewPassword), `namespaces: "*"`,
			`namespaces: "team-a"`+"\n  serviceAccounts: default\n  recoverPods: true", 1)
		code, out, errOut := runPreview(t, append([]string{"-f", writeFile(t, calm)}, kubeconfig...)...)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret calm (not in the cluster: previewed as new)
NAMESPACE   SECRET   SERVICE-ACCOUNTS
team-a      create   +default
secretsDesired: 1, sAsDesired: 1; Secrets: create 1; references: +1 -0; namespaces: 11 read, 1 terminating skipped
recoverPods: evict 0, stuck 0; Pending Pods: 11 read
`, out)
	})
}

// mintedDemo is the fixture's demo with a minted credential instead of its password; extra is
// added to its spec.
func mintedDemo(extra, instanceToken string) string {
	return `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata: {name: demo}
spec:
  namespaces: "team-a, team-b, team-c, team-d, gone"
  serviceAccounts: "default, deployer"
` + extra + `  docker:
    server: ` + previewServer + `
    instanceToken: ` + instanceToken + `
`
}

// mintedTable is demoTable for mintedDemo, after the lines about the credential: the Secrets of
// demo that exist cannot be compared with a token the preview does not mint.
const mintedTable = `NAMESPACE   SECRET    SERVICE-ACCOUNTS
old         delete    -default
team-a      create    +default,+deployer
team-b      unknown   default,+deployer
team-c      foreign   default
team-d      unknown   default
secretsDesired: 4, sAsDesired: 6; Secrets: create 1, delete 1, foreign 1, unknown 2; references: +3 -1; namespaces: 11 read, 1 terminating skipped
SecretNotOwned: Secret team-c/tcr.ipsdemo exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own
`

// TestPreviewInstanceToken previews rules whose credential the controller mints: where it comes
// from and the rotation policy are shown, the API key Secret is checked as the controller would,
// and nothing is minted (the preview has no TCR API to call) or written.
func TestPreviewInstanceToken(t *testing.T) {
	env := startPreviewFixture(t)
	ctx := context.Background()
	kubeconfig := []string{"--kubeconfig", env.Kubeconfig}
	takeRequests := recordRequests(t)
	const (
		withKey         = `{registryId: tcr-abcd1234, region: ap-guangzhou, apiKeySecretRef: {name: tcr-api-key}}`
		keySecret       = "Key-preview-SECRET-51e0"
		credentialLines = "Credential: minted Temporary token of instance tcr-abcd1234 (region ap-guangzhou), API key from Secret tcr-assistant-system/tcr-api-key\n" +
			"Rotation policy: Verified: a new token the registry rejects is held, and the last accepted one stays distributed\n"
		unknownNote = "Note: the preview mints no token, so whether the existing Secrets hold the controller's current token is unknown\n"
	)
	preview := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		takeRequests()
		code, out, errOut := runPreview(t, append(args, kubeconfig...)...)
		assert.NotContains(t, out+errOut, keySecret)
		for _, r := range takeRequests() {
			assert.True(t, strings.HasPrefix(r, "GET "), "a request that is not a read: %s", r)
		}
		return code, out, errOut
	}
	file := writeFile(t, mintedDemo("", withKey))

	t.Run("the API key Secret does not exist", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", file)
		assert.Equal(t, 0, code, errOut)
		assert.Empty(t, errOut)
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+
			"Note: Secret tcr-assistant-system/tcr-api-key named by docker.instanceToken.apiKeySecretRef does not exist; the controller mints nothing (APIKeySecretNotFound)\n"+
			unknownNote+mintedTable, out)
	})

	const ns = "tcr-assistant-system"
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tcr-api-key"},
		Data: map[string][]byte{"SecretId": []byte("AKIDpreviewEXAMPLE")}}
	require.NoError(t, env.Client.Create(ctx, key))
	// The controller's namespace is one more namespace read.
	table := strings.Replace(mintedTable, "11 read", "12 read", 1)

	t.Run("the API key Secret did not opt in", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", file)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+
			`Note: Secret tcr-assistant-system/tcr-api-key named by docker.instanceToken.apiKeySecretRef may not be a password source: it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; the controller mints nothing with it (PasswordSourceNotAllowed)`+"\n"+
			unknownNote+table, out)
	})

	key.Labels = map[string]string{tcrv1.PasswordSourceLabel: "true"}
	require.NoError(t, env.Client.Update(ctx, key))

	t.Run("the API key Secret has no SecretKey", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", file)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+
			"Note: Secret tcr-assistant-system/tcr-api-key named by docker.instanceToken.apiKeySecretRef needs the keys SecretId and SecretKey; the controller mints nothing with it (APIKeySecretNotFound)\n"+
			unknownNote+table, out)
	})

	key.Data["SecretKey"] = []byte(keySecret)
	require.NoError(t, env.Client.Update(ctx, key))

	t.Run("a usable API key: the credential, and no note of it", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", file)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+unknownNote+table, out)
	})

	t.Run("LongTerm, the manager's cloud identity, Immediate; a new rule has nothing unknown", func(t *testing.T) {
		cr := strings.Replace(mintedDemo("  rotationPolicy: Immediate\n", `{registryId: tcr-abcd1234, region: ap-shanghai, type: LongTerm}`),
			"name: demo", "name: fresh", 1)
		code, out, errOut := preview(t, "-f", writeFile(t, cr))
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, `ImagePullSecret fresh (not in the cluster: previewed as new)
Credential: minted LongTerm token of instance tcr-abcd1234 (region ap-shanghai), with the manager's cloud identity (TKE pod identity or the CVM role)
Rotation policy: Immediate: a new token is distributed at once
NAMESPACE   SECRET   SERVICE-ACCOUNTS
team-a      create   +default,+deployer
team-b      create   +default,+deployer
team-c      create   +default
team-d      create   +default
secretsDesired: 4, sAsDesired: 6; Secrets: create 4; references: +6 -0; namespaces: 12 read, 1 terminating skipped
`, out)
	})

	t.Run("-o json", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", file, "-o", "json")
		assert.Equal(t, 0, code, errOut)
		var doc struct {
			Items []struct {
				Notes      []string        `json:"notes"`
				Credential json.RawMessage `json:"credential"`
			} `json:"items"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &doc))
		require.Len(t, doc.Items, 1)
		assert.JSONEq(t, `{"type": "Temporary", "registryId": "tcr-abcd1234", "region": "ap-guangzhou",
  "apiKeySecret": "tcr-assistant-system/tcr-api-key", "rotationPolicy": "Verified"}`, string(doc.Items[0].Credential))
		assert.Equal(t, []string{strings.TrimSuffix(strings.TrimPrefix(unknownNote, "Note: "), "\n")}, doc.Items[0].Notes)

		// A rule of the cluster, read by NAME: the same.
		live := &tcrv1.ImagePullSecret{}
		require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "demo"}, live))
		live.Spec.Docker = tcrv1.DockerCredential{Server: previewServer, InstanceToken: &tcrv1.InstanceToken{
			RegistryID: "tcr-abcd1234", Region: "ap-guangzhou", APIKeySecretRef: &tcrv1.SecretReference{Name: "tcr-api-key"}}}
		require.NoError(t, env.Client.Update(ctx, live))
		code, out, errOut = preview(t, "demo")
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+unknownNote+table, out)
	})

	t.Run("delivery by the credential provider", func(t *testing.T) {
		code, out, errOut := preview(t, "-f", writeFile(t, mintedDemo("  delivery: CredentialProvider\n", withKey)))
		assert.Equal(t, 0, code, errOut)
		// Every copy of demo goes (team-c's Secret is not demo's); no reference is added.
		assert.Equal(t, "ImagePullSecret demo (in the cluster)\n"+credentialLines+
			"Delivery: CredentialProvider: no Secret and no reference; the kubelet's credential provider asks the manager (copies left from before are deleted)\n"+
			`NAMESPACE   SECRET   SERVICE-ACCOUNTS
old         delete   -default
team-b      delete   -default
team-d      delete   -default
secretsDesired: 0, sAsDesired: 0; Secrets: delete 3; references: +0 -3; namespaces: 12 read, 1 terminating skipped
`, out)
	})
}
