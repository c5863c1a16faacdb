package v1_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

func TestPasswordSourceAllowed(t *testing.T) {
	const webhookSecret = "tcr-assistant-webhook-server-cert"
	optedIn := map[string]string{tcrv1.PasswordSourceLabel: "true"}
	secret := func(name string, typ corev1.SecretType, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tcr-assistant-system", Labels: labels}, Type: typ}
	}
	tests := map[string]struct {
		secret  *corev1.Secret
		wantOK  bool
		wantWhy string
	}{
		"an Opaque Secret that opted in":      {secret: secret("tcr-password", corev1.SecretTypeOpaque, optedIn), wantOK: true},
		"a Secret with no type that opted in": {secret: secret("tcr-password", "", optedIn), wantOK: true},
		"a Secret without the label": {secret: secret("tcr-password", corev1.SecretTypeOpaque, nil),
			wantWhy: `it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source`},
		"a label with another value": {secret: secret("tcr-password", corev1.SecretTypeOpaque, map[string]string{tcrv1.PasswordSourceLabel: "True"}),
			wantWhy: `it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source`},
		"the webhook certificate Secret, even labelled": {secret: secret(webhookSecret, corev1.SecretTypeOpaque, optedIn),
			wantWhy: "it is the webhook's certificate Secret, which is never a password source"},
		"a ServiceAccount token, even labelled": {secret: secret("token", corev1.SecretTypeServiceAccountToken, optedIn),
			wantWhy: "it is of type kubernetes.io/service-account-token, which is never a password source"},
		"a TLS Secret, even labelled": {secret: secret("tls", corev1.SecretTypeTLS, optedIn),
			wantWhy: "it is of type kubernetes.io/tls, which is never a password source"},
		"no Secret": {wantWhy: "the Secret does not exist"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ok, why := tcrv1.PasswordSourceAllowed(tt.secret, webhookSecret)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.wantWhy, why)
		})
	}
	assert.Equal(t, "tcr.tencentcloudcr.com/password-source", tcrv1.PasswordSourceLabel)
}
