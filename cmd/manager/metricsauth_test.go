package main

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

func TestDecisionCacheIsBoundedAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := decisionCache{max: 4}
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte("token-" + strconv.Itoa(i))) }
	allowed := metricsDecision{status: http.StatusOK, expires: now.Add(metricsAuthTTL)}

	c.put(key(0), allowed)
	d, ok := c.get(key(0), now)
	assert.True(t, ok)
	assert.Equal(t, http.StatusOK, d.status)
	_, ok = c.get(key(0), now.Add(metricsAuthTTL))
	assert.False(t, ok, "a decision is reused for metricsAuthTTL only")

	for i := range 1000 {
		c.put(key(i), allowed)
		assert.LessOrEqual(t, len(c.m), c.max, "tokens chosen by callers never grow the cache past its bound")
	}
	_, ok = c.get(key(999), now)
	assert.True(t, ok, "the newest decision is kept")
}

// TestMetricsDecisionsAreKeptPerToken runs the metrics filter's decide against the real API
// server's TokenReview and SubjectAccessReview: a decision is reused only for the token, verb and
// path it was made for, and only for metricsAuthTTL. Token A is allowed; token B, for the same
// path right after, gets its own answer: 401 when TokenReview refuses it, 403 when the
// SubjectAccessReview denies it. Once A's decision expires, A is reviewed again, and a revoked
// binding then refuses it.
func TestMetricsDecisionsAreKeptPerToken(t *testing.T) {
	ctx := context.Background()
	const ns = "metrics-auth"
	cs, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	token := func(sa string) string {
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}},
			metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}
	reader, stranger := token("reader"), token("stranger")
	// The bundle's tcr-assistant-metrics-reader role, bound to the reader only.
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-auth-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	require.NoError(t, err)
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-auth-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "reader"}},
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})

	hc, err := rest.HTTPClientFor(env.Config)
	require.NoError(t, err)
	a, err := newMetricsAuth(env.Config, hc)
	require.NoError(t, err)
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }
	type answer struct {
		Status  int
		Message string
	}
	decide := func(token string) answer {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		d := a.decide(logr.Discard(), req)
		return answer{d.status, d.message}
	}
	allowed := answer{http.StatusOK, ""}
	unauthorized := answer{http.StatusUnauthorized, "Unauthorized"}
	denied := func(sa string) answer {
		return answer{http.StatusForbidden, "Authorization denied for user system:serviceaccount:" + ns + ":" + sa}
	}

	// RBAC answers for a new binding once its informer has seen it.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		a.decisions = decisionCache{max: metricsAuthCacheSize}
		assert.Equal(c, allowed, decide(reader))
	}, 30*time.Second, 100*time.Millisecond)

	assert.Equal(t, unauthorized, decide("not-a-token"), "a token TokenReview refuses never gets the reader's decision")
	assert.Equal(t, unauthorized, decide(reader+"x"), "nor does a forged one")
	assert.Equal(t, denied("stranger"), decide(stranger), "a token the SubjectAccessReview denies never gets the reader's decision")
	assert.Equal(t, unauthorized, decide(""))
	assert.Equal(t, allowed, decide(reader), "the reader's decision is kept")

	// Revoke the reader's binding: its cached decision holds for metricsAuthTTL, then it is
	// reviewed again and refused.
	require.NoError(t, cs.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}))
	assert.Equal(t, allowed, decide(reader), "within metricsAuthTTL the decision is reused")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		now = now.Add(metricsAuthTTL) // until RBAC has seen the delete, each review is allowed and kept
		assert.Equal(c, denied("reader"), decide(reader), "an expired decision is reviewed again")
	}, 30*time.Second, 100*time.Millisecond)
}
