// Package wire is the protocol between the kubelet's credential provider plugin
// (cmd/tcr-credential-provider) and the manager's credential endpoint (package credprovider), in
// one place for both sides. It imports nothing, so that the plugin stays small.
//
// POST Path with "Authorization: Bearer <the Pod's ServiceAccount token>" and a Request; a 200
// carries an Answer, any other status a Refusal.
package wire

// Audience is the audience of the ServiceAccount tokens the kubelet hands the plugin, and the
// one the endpoint's TokenReview names (api/v1's CredentialProviderAudience).
const Audience = "tcr-assistant.tcr.tencentcloudcr.com"

// Path is where the manager serves the credential endpoint.
const Path = "/credential-provider/v1"

// Request is the body of a request: the image the kubelet pulls.
type Request struct {
	Image string `json:"image"`
}

// Answer is the body of a credential served: the registry of the image, the login, how long it
// may be cached, and when the credential expires (RFC 3339), when known.
type Answer struct {
	Registry     string `json:"registry"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	CacheSeconds int64  `json:"cacheSeconds"`
	ExpiresAt    string `json:"expiresAt,omitempty"`
}

// Refusal is the body of a refusal: a word for why, and a line that says it.
type Refusal struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}
