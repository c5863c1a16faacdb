package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestDockerLogins(t *testing.T) {
	tests := map[string]struct {
		data string
		want []registryLogin
	}{
		"the original's document: the username field": {
			data: `{"auths":{"fanjiankong-bj.tencentcloudcr.com":{"username":"100012345678","password":"tcr.jwt.token","auth":"MTAwMDEyMzQ1Njc4OnRjci5qd3QudG9rZW4="}}}`,
			want: []registryLogin{{server: "fanjiankong-bj.tencentcloudcr.com", username: "100012345678"}},
		},
		"without a username field, the user part of auth": {
			data: `{"auths":{"r.example.com":{"auth":"MTAwMDEyMzQ1Njc4OnRjci5qd3QudG9rZW4="}}}`,
			want: []registryLogin{{server: "r.example.com", username: "100012345678"}},
		},
		"several servers, sorted": {
			data: `{"auths":{"b.example.com":{"username":"x"},"a.example.com":{"username":"y"}}}`,
			want: []registryLogin{{server: "a.example.com", username: "y"}, {server: "b.example.com", username: "x"}},
		},
		"an auth that is not base64 gives no username": {
			data: `{"auths":{"r.example.com":{"auth":"%%%"}}}`,
			want: []registryLogin{{server: "r.example.com"}},
		},
		"a document that does not parse holds none": {data: `{"auths":`},
		"more entries than the bound hold none":     {data: manyAuths(maxAdoptionLogins + 1)},
		"as many entries as the bound are kept":     {data: manyAuths(maxAdoptionLogins), want: manyLogins(maxAdoptionLogins)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := dockerLogins([]byte(tc.data))
			if tc.want == nil {
				assert.Empty(t, got)
				return
			}
			assert.Equal(t, tc.want, got)
			assert.NotContains(t, fmt.Sprintf("%#v", got), "tcr.jwt.token", "no password is kept")
		})
	}
}

// TestSlimSecretKeepsLoginsOfAdoptionCandidatesOnly: the cache keeps the logins of a pull Secret
// named tcr.ips* without a controller, and of no other.
func TestSlimSecretKeepsLoginsOfAdoptionCandidatesOnly(t *testing.T) {
	data := map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"r.example.com":{"username":"u","password":"p"}}}`)}
	yes := true
	candidate := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tcr.ipsx"}, Type: corev1.SecretTypeDockerConfigJson, Data: data}
	assert.Equal(t, []registryLogin{{server: "r.example.com", username: "u"}}, newSlimSecret(candidate.DeepCopy()).logins)
	for name, edit := range map[string]func(*corev1.Secret){
		"another name": func(s *corev1.Secret) { s.Name = "registry" },
		"another type": func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque },
		"a controller": func(s *corev1.Secret) {
			s.OwnerReferences = []metav1.OwnerReference{{Kind: "ImagePullSecret", Name: "x", UID: "u", Controller: &yes}}
		},
	} {
		s := candidate.DeepCopy()
		edit(s)
		assert.Nil(t, newSlimSecret(s).logins, name)
	}
}

// manyAuths is a .dockerconfigjson of n servers s0.example.com... with user u.
func manyAuths(n int) string {
	entries := make([]string, n)
	for i := range n {
		entries[i] = fmt.Sprintf(`"s%d.example.com":{"username":"u"}`, i)
	}
	return `{"auths":{` + strings.Join(entries, ",") + `}}`
}

func manyLogins(n int) []registryLogin {
	out := make([]registryLogin, n)
	for i := range n {
		out[i] = registryLogin{server: fmt.Sprintf("s%d.example.com", i), username: "u"}
	}
	slices.SortFunc(out, func(a, b registryLogin) int { return strings.Compare(a.server, b.server) })
	return out
}
