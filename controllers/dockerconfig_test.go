package controllers

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestRenderDockerConfig(t *testing.T) {
	tests := map[string]struct {
		server, user, pass string
		want               string
	}{
		"the original's sample renders username, password and auth in that order": {
			server: "fanjiankong-bj.tencentcloudcr.com", user: "100012345678", pass: "tcr.jwt.token",
			want: `{"auths":{"fanjiankong-bj.tencentcloudcr.com":{"username":"100012345678","password":"tcr.jwt.token","auth":"MTAwMDEyMzQ1Njc4OnRjci5qd3QudG9rZW4="}}}`,
		},
		"a server with a port is kept as the key": {
			server: "registry.example.com:5000", user: "u", pass: "p",
			want: `{"auths":{"registry.example.com:5000":{"username":"u","password":"p","auth":"dTpw"}}}`,
		},
		"HTML characters are not escaped and quotes are": {
			server: "r.example.com", user: "a&b", pass: `<"x">`,
			want: `{"auths":{"r.example.com":{"username":"a&b","password":"<\"x\">","auth":"YSZiOjwieCI+"}}}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := renderDockerConfig(tc.server, tc.user, tc.pass)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
			assert.True(t, json.Valid(got))
		})
	}
}

func TestSecretDataMatches(t *testing.T) {
	want := newSecretData([]byte(`{"auths":{}}`))
	tests := map[string]struct {
		secret corev1.Secret
		want   bool
	}{
		"the same type and data match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}},
			want:   true,
		},
		"other data does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{}`)}},
		},
		"an extra key does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`), "x": nil}},
		},
		"another type does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}},
		},
		"no data does not match": {
			secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, want.matches(newSlimSecret(&tc.secret)))
		})
	}
}
