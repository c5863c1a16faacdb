package admission

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

func sample() *tcrv1.ImagePullSecret {
	return &tcrv1.ImagePullSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "imagepullsecret-sample"},
		Spec: tcrv1.ImagePullSecretSpec{
			Namespaces: "*", ServiceAccounts: "*",
			Docker: tcrv1.DockerCredential{Server: "fanjiankong-bj.tencentcloudcr.com", Username: "100012345678", Password: "s3cr3t-token"},
		},
	}
}

// TestTheWebhookRefusesWhatTheCRDRefuses keeps the webhook the authority: every cheap check
// the CRD schema makes, the webhook makes too, so a cluster with either one refuses the input.
func TestTheWebhookRefusesWhatTheCRDRefuses(t *testing.T) {
	tests := map[string]struct {
		edit func(*tcrv1.ImagePullSecret)
		want string
	}{
		"a missing docker block": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Docker = tcrv1.DockerCredential{} },
			want: "spec.docker.server: Required value: set the registry host name",
		},
		"a server with https://": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Docker.Server = "https://r.example.com" },
			want: `spec.docker.server: Invalid value: "https://r.example.com": must be a host name without a scheme: write "r.example.com"`,
		},
		"an empty server": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Docker.Server = "" },
			want: "spec.docker.server: Required value",
		},
		"a user name that is only whitespace": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Docker.Username = " \t" },
			want: "spec.docker.username: Required value: set the registry user name",
		},
		"a password that is only whitespace": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Docker.Password = "   " },
			want: "spec.docker.password: Required value: set the registry password or token",
		},
		"a password and a password Secret at once": {
			edit: func(ips *tcrv1.ImagePullSecret) {
				ips.Spec.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "tcr-password", Key: "password"}
			},
			want: "spec.docker.password: Forbidden: set either spec.docker.password or spec.docker.passwordSecretRef, not both",
		},
		"a name too long for the distributed Secret": {
			edit: func(ips *tcrv1.ImagePullSecret) { ips.Name = strings.Repeat("a", tcrv1.MaxNameLength+1) },
			want: `metadata.name: Too long: must be at most 246 characters: the distributed Secret is named "tcr.ips" + name`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ips := sample()
			tc.edit(ips)
			_, err := Validator{}.ValidateCreate(context.Background(), ips)
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err))
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cr3t-token", "no message repeats the password")
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	broken := func(ips *tcrv1.ImagePullSecret) { ips.Spec.Namespaces = "team-*" }
	tests := map[string]struct {
		old, new func(*tcrv1.ImagePullSecret)
		wantErr  string
	}{
		"a change that breaks a valid spec is refused": {
			old: func(*tcrv1.ImagePullSecret) {}, new: broken,
			wantErr: `spec.namespaces: Invalid value: "team-*": is a pattern, and patterns are not supported`,
		},
		"a valid change is admitted": {
			old: func(*tcrv1.ImagePullSecret) {},
			new: func(ips *tcrv1.ImagePullSecret) { ips.Spec.Namespaces = "app-a,app-b" },
		},
		"a metadata-only update of a CR that predates a stricter rule is admitted, so finalizers can go": {
			old: broken,
			new: func(ips *tcrv1.ImagePullSecret) {
				broken(ips)
				ips.Finalizers = nil
				ips.Labels = map[string]string{"a": "b"}
			},
		},
		"any update of a CR being deleted is admitted": {
			old: func(*tcrv1.ImagePullSecret) {},
			new: func(ips *tcrv1.ImagePullSecret) { broken(ips); ips.DeletionTimestamp = &metav1.Time{} },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			old, updated := sample(), sample()
			old.Finalizers = []string{tcrv1.Finalizer}
			updated.Finalizers = []string{tcrv1.Finalizer}
			tc.old(old)
			tc.new(updated)
			_, err := Validator{}.ValidateUpdate(context.Background(), old, updated)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestWarningsAdmit(t *testing.T) {
	ips := sample()
	ips.Spec.ServiceAccounts = "default,default"
	warnings, err := Validator{}.ValidateCreate(context.Background(), ips)
	require.NoError(t, err)
	assert.Equal(t, []string{`spec.serviceAccounts: "default" is listed more than once; the duplicate is ignored`}, []string(warnings))
	warnings, err = Validator{}.ValidateDelete(context.Background(), ips)
	assert.NoError(t, err)
	assert.Empty(t, warnings)
}
