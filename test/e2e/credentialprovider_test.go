package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

const (
	// credentialProviderComponent puts the kubelet credential provider plugin on every node.
	credentialProviderComponent = "config/components/credential-provider"
	// credentialProvider names the component's DaemonSet and its ServiceAccount.
	credentialProvider = "tcr-credential-provider"
	// audienceRole names the bundle's ClusterRole and ClusterRoleBinding that let the kubelets
	// request tokens for the plugin's audience.
	audienceRole = "tcr-assistant-credential-provider-audience"
)

// credentialProviderDaemonSet is the DaemonSet the component adds, in image: what the README
// tells an administrator it installs, field for field.
func credentialProviderDaemonSet(t *testing.T, image string) *appsv1.DaemonSet {
	t.Helper()
	doc := `
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: tcr-credential-provider
  namespace: tcr-assistant-system
  labels:
    app.kubernetes.io/name: tcr-credential-provider
    app.kubernetes.io/part-of: tcr-assistant
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: tcr-credential-provider
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 10%
  template:
    metadata:
      labels:
        app.kubernetes.io/name: tcr-credential-provider
        app.kubernetes.io/part-of: tcr-assistant
    spec:
      serviceAccountName: tcr-credential-provider
      automountServiceAccountToken: false
      enableServiceLinks: true
      priorityClassName: system-node-critical
      tolerations:
      - operator: Exists
      terminationGracePeriodSeconds: 10
      securityContext:
        runAsUser: 0
        runAsGroup: 0
        seccompProfile:
          type: RuntimeDefault
      containers:
      - name: credential-provider
        image: ` + image + `
        imagePullPolicy: IfNotPresent
        command: [/tcr-credential-provider]
        args:
        - install
        - --bin-dir=/host/bin
        - --config-dir=/host/config
        - --host-bin-dir=/var/lib/tcr-assistant/credential-provider/bin
        - --host-config-dir=/var/lib/tcr-assistant/credential-provider
        - --endpoint=https://$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_HOST):$(TCR_ASSISTANT_WEBHOOK_SERVICE_SERVICE_PORT)
        - --server-name=tcr-assistant-webhook-service.tcr-assistant-system.svc
        - --ca-file=/ca/ca.crt
        - --match-images=*.tencentcloudcr.com
        - --cache-duration=5m
        - --watch
        resources:
          requests: {cpu: 10m, memory: 32Mi}
          limits: {cpu: 100m, memory: 100Mi}
        securityContext:
          privileged: false
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities:
            drop: [ALL]
        volumeMounts:
        - {name: host-bin, mountPath: /host/bin}
        - {name: host-config, mountPath: /host/config}
        - {name: ca, mountPath: /ca, readOnly: true}
      volumes:
      - name: host-bin
        hostPath: {path: /var/lib/tcr-assistant/credential-provider/bin, type: DirectoryOrCreate}
      - name: host-config
        hostPath: {path: /var/lib/tcr-assistant/credential-provider, type: DirectoryOrCreate}
      - name: ca
        secret:
          secretName: tcr-assistant-webhook-server-cert
          items:
          - {key: ca.crt, path: ca.crt}
`
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &ds))
	return &ds
}

// TestCredentialProviderComponent: config/components/credential-provider, over config/default or
// over dist/install.yaml, adds the DaemonSet tcr-credential-provider and its ServiceAccount and
// changes nothing else. The DaemonSet runs the manager's image, reaches the manager through the
// Service's environment variables with the Service's DNS name as the server name, mounts the key
// ca.crt of the webhook's certificate Secret alone, and writes nothing on the node but its two
// folders; its ServiceAccount has no token and no RBAC.
func TestCredentialProviderComponent(t *testing.T) {
	bundle := readBundle(t)
	managerImage := typed[appsv1.Deployment](t, findObject(t, bundle, "Deployment", "tcr-assistant-controller-manager")).
		Spec.Template.Spec.Containers[0].Image
	require.NotEqual(t, "tcr-assistant", managerImage, "the bundle names the image it was rendered with")

	for _, base := range []string{"config/default", installer} {
		t.Run("over "+base, func(t *testing.T) {
			objs := kustomize(t, []string{base}, credentialProviderComponent)
			require.Len(t, objs, len(bundle)+2)
			for _, want := range bundle {
				got := findObject(t, objs, want.GetKind(), want.GetName())
				assert.Equal(t, want.Object, got.Object, "%s %s changed", want.GetKind(), want.GetName())
			}
			sa := typed[corev1.ServiceAccount](t, findObject(t, objs, "ServiceAccount", credentialProvider))
			assert.Equal(t, ownNamespace, sa.Namespace)
			assert.Equal(t, ptr.To(false), sa.AutomountServiceAccountToken, "the installer talks to no API")
			assert.Equal(t, credentialProviderDaemonSet(t, managerImage),
				typed[appsv1.DaemonSet](t, findObject(t, objs, "DaemonSet", credentialProvider)))
		})
	}

	objs := kustomize(t, []string{installer}, credentialProviderComponent)
	ds := typed[appsv1.DaemonSet](t, findObject(t, objs, "DaemonSet", credentialProvider))
	pod := ds.Spec.Template.Spec

	t.Run("its ServiceAccount is bound to nothing", func(t *testing.T) {
		for _, o := range objs {
			if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
				continue
			}
			for _, s := range typed[rbacv1.ClusterRoleBinding](t, o).Subjects {
				assert.NotEqual(t, credentialProvider, s.Name, "%s %s binds %s", o.GetKind(), o.GetName(), s.Name)
			}
		}
	})

	t.Run("it mounts the CA, never the key, and writes only its two host folders", func(t *testing.T) {
		var hostPaths []string
		for _, v := range pod.Volumes {
			switch {
			case v.Secret != nil:
				assert.Equal(t, certSecret, v.Secret.SecretName)
				assert.Equal(t, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}, v.Secret.Items, "only ca.crt: never tls.key")
				assert.Nil(t, v.Secret.Optional, "not optional: the pod waits for the manager's CA")
			case v.HostPath != nil:
				hostPaths = append(hostPaths, v.HostPath.Path)
			default:
				t.Errorf("volume %s is neither the CA nor a host folder", v.Name)
			}
		}
		assert.Equal(t, []string{"/var/lib/tcr-assistant/credential-provider/bin", "/var/lib/tcr-assistant/credential-provider"}, hostPaths)
	})

	// Like the agent, it needs hostPath volumes and root; every other check of "restricted" it
	// meets.
	t.Run("its pod fails only the checks its host writes need", func(t *testing.T) {
		assert.Equal(t, agentPodSecurityFailures, podSecurityFailures(t, ds.Spec.Template.ObjectMeta, pod))
	})

	t.Run("the API server accepts both objects", func(t *testing.T) {
		installBundle(t)
		var docs []string
		for _, kind := range []string{"ServiceAccount", "DaemonSet"} {
			data, err := yaml.Marshal(findObject(t, objs, kind, credentialProvider).Object)
			require.NoError(t, err)
			docs = append(docs, string(data))
		}
		out, _, err := env.Kubectl(strings.Join(docs, "---\n"), "apply", "--dry-run=server", "-f", "-")
		require.NoError(t, err)
		assert.Equal(t, "serviceaccount/tcr-credential-provider created (server dry run)\n"+
			"daemonset.apps/tcr-credential-provider created (server dry run)\n", out)
	})

	// The patch the component's kustomization.yaml shows for another --match-images.
	t.Run("the documented patch sets --match-images", func(t *testing.T) {
		overlay := t.TempDir()
		data, err := os.ReadFile(filepath.Join(env.Root, installer))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(overlay, "install.yaml"), data, 0o644))
		component, err := filepath.Rel(overlay, filepath.Join(env.Root, credentialProviderComponent))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(`resources:
- install.yaml
components:
- `+component+`
patches:
- target: {group: apps, kind: DaemonSet, name: tcr-credential-provider}
  patch: |-
    - op: test
      path: /spec/template/spec/containers/0/args/8
      value: --match-images=*.tencentcloudcr.com
    - op: replace
      path: /spec/template/spec/containers/0/args/8
      value: --match-images=*.tencentcloudcr.com,registry.example.com
`), 0o644))
		got := typed[appsv1.DaemonSet](t, findObject(t, kustomizeDir(t, overlay), "DaemonSet", credentialProvider))
		want := credentialProviderDaemonSet(t, managerImage)
		want.Spec.Template.Spec.Containers[0].Args[8] = "--match-images=*.tencentcloudcr.com,registry.example.com"
		assert.Equal(t, want, got)
	})
}

// nodeAuthorization configures the API server as a cluster that runs kubelets: the Node
// authorizer before RBAC, and the NodeRestriction admission plugin, which checks a node's
// TokenRequests (the envtest default is RBAC alone, without NodeRestriction).
func nodeAuthorization(e *envtest.Environment) {
	e.ControlPlane.GetAPIServer().Configure().
		Set("authorization-mode", "Node,RBAC").
		Set("enable-admission-plugins", "NodeRestriction")
}

// TestKubeletGetsTokensForTheCredentialProviderAudienceOnlyThroughTheBundlesRBAC asks, as the
// kubelet of node n1 would for the credential provider plugin, for a token of the ServiceAccount of
// a Pod on n1 with the plugin's audience. Without the bundle's ClusterRoleBinding the API server
// refuses it; with the ClusterRole and ClusterRoleBinding of dist/install.yaml it grants it, a token
// the manager's TokenReview for that audience accepts. Another audience is still refused, and so
// is another node.
func TestKubeletGetsTokensForTheCredentialProviderAudienceOnlyThroughTheBundlesRBAC(t *testing.T) {
	bundle := readBundle(t)
	ownControlPlane(t, nodeAuthorization)
	ctx := context.Background()
	admin, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)

	const (
		ns = "e2e-kubelet-tokens"
		// volumeAudience is an audience the Pod's own projected token volume names, which
		// NodeRestriction lets its node request without any RBAC.
		volumeAudience = "e2e-volume-audience"
	)
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: corev1.PodSpec{
			NodeName:                     "n1",
			ServiceAccountName:           "app",
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "e2e.tencentcloudcr.com/team/app:1"}},
			Volumes: []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: volumeAudience, Path: "token"}}},
			}}}},
		},
	}
	require.NoError(t, env.Client.Create(ctx, pod))

	// kubelet is a client of node's identity, as its node credentials would authenticate it.
	kubelet := func(node string) *kubernetes.Clientset {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:node:" + node, Groups: []string{"system:nodes", "system:authenticated"}}
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		return cs
	}
	// requestToken asks for a token of the Pod's ServiceAccount, bound to the Pod, for audience,
	// as the kubelet does for a credential provider with tokenAttributes.
	requestToken := func(cs *kubernetes.Clientset, audience string) (string, error) {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{
				Audiences:         []string{audience},
				ExpirationSeconds: ptr.To[int64](600),
				BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", err
		}
		return tr.Status.Token, nil
	}
	refusal := func(node, audience string) string {
		return `serviceaccounts "app" is forbidden: system:node:` + node + ` is not authorized to request tokens for audience "` + audience + `"`
	}
	n1 := kubelet("n1")

	// The Node authorizer's graph and NodeRestriction's Pod cache follow the Pod asynchronously:
	// once n1 gets a token for the audience its Pod's volume names, both know the Pod.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := requestToken(n1, volumeAudience)
		assert.NoError(c, err)
	}, waitTimeout, waitInterval, "n1 never got a token for its Pod's own volume audience")

	t.Run("without the ClusterRoleBinding the kubelet is refused the audience", func(t *testing.T) {
		_, err := requestToken(n1, tcrv1.CredentialProviderAudience)
		require.EqualError(t, err, refusal("n1", tcrv1.CredentialProviderAudience))
	})

	// The bundle's two objects, as dist/install.yaml renders them.
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		o := findObject(t, bundle, kind, audienceRole).DeepCopy()
		require.NoError(t, env.Client.Create(ctx, o))
	}
	role := typed[rbacv1.ClusterRole](t, findObject(t, bundle, "ClusterRole", audienceRole))
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{tcrv1.CredentialProviderAudience},
		Verbs: []string{"request-serviceaccounts-token-audience"}}}, role.Rules)
	binding := typed[rbacv1.ClusterRoleBinding](t, findObject(t, bundle, "ClusterRoleBinding", audienceRole))
	assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: audienceRole}, binding.RoleRef)
	assert.Equal(t, []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:nodes"}}, binding.Subjects)

	t.Run("with the bundle's RBAC the kubelet gets a token the manager's TokenReview accepts", func(t *testing.T) {
		var token string
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var err error
			token, err = requestToken(n1, tcrv1.CredentialProviderAudience)
			require.NoError(c, err)
		}, waitTimeout, waitInterval, "n1 never got a token for the credential provider's audience")
		review, err := admin.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
			Token: token, Audiences: []string{tcrv1.CredentialProviderAudience},
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.True(t, review.Status.Authenticated, review.Status.Error)
		assert.Equal(t, "system:serviceaccount:"+ns+":app", review.Status.User.Username)
		assert.Equal(t, []string{tcrv1.CredentialProviderAudience}, review.Status.Audiences)
		assert.Equal(t, authenticationv1.ExtraValue{pod.Name}, review.Status.User.Extra["authentication.kubernetes.io/pod-name"])
	})

	t.Run("another audience is still refused", func(t *testing.T) {
		_, err := requestToken(n1, "other.example.com")
		require.EqualError(t, err, refusal("n1", "other.example.com"))
	})

	t.Run("another node gets no token for a Pod it does not run", func(t *testing.T) {
		_, err := requestToken(kubelet("n2"), tcrv1.CredentialProviderAudience)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `serviceaccounts "app" is forbidden: User "system:node:n2" cannot create resource "serviceaccounts/token"`)
	})
}
