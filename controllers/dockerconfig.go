package controllers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// dockerConfig is the kubernetes.io/dockerconfigjson document; its field order is the one the
// original product writes, so that copies compare byte for byte.
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

// renderDockerConfig returns the .dockerconfigjson of one registry login. Its errors never
// contain the credential.
func renderDockerConfig(server, username, password string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(dockerConfig{Auths: map[string]dockerAuth{server: {
		Username: username,
		Password: password,
		Auth:     base64.StdEncoding.EncodeToString([]byte(username + ":" + password)),
	}}})
	if err != nil {
		return nil, fmt.Errorf("rendering the docker config for server %q failed", server)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// secretData is what a distributed Secret must hold.
type secretData struct {
	dockerConfigJSON []byte
	hash             [sha256.Size]byte // of dockerConfigJSON
}

func newSecretData(dockerConfigJSON []byte) secretData {
	return secretData{dockerConfigJSON: dockerConfigJSON, hash: sha256.Sum256(dockerConfigJSON)}
}

// matches reports whether a Secret holds exactly the desired type and data.
func (d secretData) matches(s *slimSecret) bool {
	return s.secretType == corev1.SecretTypeDockerConfigJson && s.hasData && len(s.otherKeys) == 0 && s.dataHash == d.hash
}

// registryLogin is a registry server and the user who logs in to it: what adoption compares
// (docs/design.md, "Ownership"). It never holds a password.
type registryLogin struct {
	server, username string
}

// maxAdoptionLogins bounds the logins kept of one Secret. The original wrote one auths entry per
// Secret; anyone who can create a Secret could write thousands, which the cache would keep.
const maxAdoptionLogins = 8

// dockerLogins returns the logins a .dockerconfigjson holds: per auths entry, its server and its
// username field, or, when that is empty, the user part of its auth field. Passwords are not
// kept: the username field is decoded alone, and of auth only what precedes the colon. A
// document that does not parse, or that has more than maxAdoptionLogins entries (never the
// original's), holds none: its Secret is never adopted.
func dockerLogins(data []byte) []registryLogin {
	var doc struct {
		Auths map[string]struct {
			Username string `json:"username"`
			Auth     string `json:"auth"`
		} `json:"auths"`
	}
	if json.Unmarshal(data, &doc) != nil || len(doc.Auths) > maxAdoptionLogins {
		return nil
	}
	out := make([]registryLogin, 0, len(doc.Auths))
	for server, a := range doc.Auths {
		user := a.Username
		if user == "" {
			if raw, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
				// A copy: the user part alone must not keep the decoded password in memory.
				user, _, _ = strings.Cut(string(raw), ":")
				user = strings.Clone(user)
			}
		}
		out = append(out, registryLogin{server: server, username: user})
	}
	slices.SortFunc(out, func(a, b registryLogin) int { return strings.Compare(a.server, b.server) })
	return out
}
