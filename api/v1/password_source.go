package v1

import (
	corev1 "k8s.io/api/core/v1"
)

// PasswordSourceLabel marks a Secret of the controller's namespace that an ImagePullSecret's
// docker.passwordSecretRef may read. Its value must be "true". Without the opt-in, a CR could
// name any Secret of that namespace, the webhook's CA key included, and the controller would
// copy it into every selected namespace (issue 13: a confused deputy).
const PasswordSourceLabel = "tcr.tencentcloudcr.com/password-source"

// PasswordSourceAllowed reports whether s may be a password source, and why not when it may
// not. webhookSecretName is the webhook's certificate Secret, which never is one, whatever its
// labels; nor is a Secret of a type that holds credentials of the cluster itself.
func PasswordSourceAllowed(s *corev1.Secret, webhookSecretName string) (ok bool, why string) {
	switch {
	case s == nil:
		return false, "the Secret does not exist"
	case s.Name == webhookSecretName:
		return false, "it is the webhook's certificate Secret, which is never a password source"
	case s.Type == corev1.SecretTypeServiceAccountToken:
		return false, "it is of type kubernetes.io/service-account-token, which is never a password source"
	case s.Type == corev1.SecretTypeTLS:
		return false, "it is of type kubernetes.io/tls, which is never a password source"
	case s.Labels[PasswordSourceLabel] != "true":
		return false, `it does not carry the label ` + PasswordSourceLabel + `: "true", by which a Secret opts in to being a password source`
	}
	return true, ""
}
