package tcrapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
)

// Credential is a Tencent Cloud API credential: SecretId, SecretKey and, for STS credentials,
// Token. It is a common.CredentialIface, for New. Printed with %v, %+v or %#v it shows only the
// SecretId.
type Credential struct{ SecretID, SecretKey, Token string }

// GetSecretId is the SecretId.
func (c Credential) GetSecretId() string { return c.SecretID }

// GetSecretKey is the SecretKey.
func (c Credential) GetSecretKey() string { return c.SecretKey }

// GetToken is the STS token, "" for a permanent key.
func (c Credential) GetToken() string { return c.Token }

// GetCredential is SecretId, SecretKey and Token.
func (c Credential) GetCredential() (string, string, string) { return c.SecretID, c.SecretKey, c.Token }

// String shows the SecretId only.
func (c Credential) String() string {
	return fmt.Sprintf("tcrapi.Credential{SecretID: %q, SecretKey: [redacted], Token: [redacted]}", c.SecretID)
}

// GoString shows the SecretId only.
func (c Credential) GoString() string { return c.String() }

var _ common.CredentialIface = Credential{}

// tkeEnv are the variables of TKE pod identity (the SDK's DefaultTkeOIDCRoleArnProvider).
var tkeEnv = []string{"TKE_REGION", "TKE_PROVIDER_ID", "TKE_WEB_IDENTITY_TOKEN_FILE", "TKE_ROLE_ARN"}

// cvmRoleURL is where the CVM metadata service names the role bound to the instance (the SDK's
// CvmRoleProvider asks there too); a variable for tests.
var cvmRoleURL = "http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials/"

// ErrNoIdentity: neither TKE pod identity nor a CVM role is available.
var ErrNoIdentity = errors.New("no cloud identity: neither TKE pod identity (the variables " +
	strings.Join(tkeEnv, ", ") + ") nor a CVM role (metadata service) is available")

// Identity returns the manager's own cloud identity through the SDK's providers: TKE pod identity
// (common.DefaultTkeOIDCRoleArnProvider, STS AssumeRoleWithWebIdentity) when its variables are
// set, else the role of the CVM (common.DefaultCvmRoleProvider), else ErrNoIdentity. Pod identity
// that is configured but fails is an error, not a reason to fall back to the node's role. The
// credentials renew themselves before they expire, from the same source.
//
// The SDK's providers take no context: the STS call of pod identity is bounded by the SDK's
// 60 s timeout, and the CVM role's requests to the metadata service have no timeout of their
// own, so Identity first checks, within 3 s, that the metadata service names a role.
func Identity() (common.CredentialIface, error) {
	var set []string
	for _, k := range tkeEnv {
		if os.Getenv(k) != "" {
			set = append(set, k)
		}
	}
	if len(set) > 0 {
		p, err := common.DefaultTkeOIDCRoleArnProvider()
		if err != nil {
			// The provider's errors name a missing variable or the token file.
			return nil, fmt.Errorf("TKE pod identity is configured (%s) but unusable: %s", strings.Join(set, ", "), err.Error())
		}
		cred, err := p.GetCredential()
		if err != nil {
			return nil, fmt.Errorf("TKE pod identity: AssumeRoleWithWebIdentity failed: %s", providerError(err))
		}
		return cred, nil
	}
	if !cvmRoleBound() {
		return nil, ErrNoIdentity
	}
	cred, err := common.DefaultCvmRoleProvider().GetCredential()
	if err != nil {
		return nil, fmt.Errorf("CVM role: %s", providerError(err))
	}
	return cred, nil
}

// cvmRoleBound tells whether the metadata service names a role of the instance.
func cvmRoleBound() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cvmRoleURL, nil)
	if err != nil {
		return false
	}
	// The metadata service is link-local to the instance: never through a proxy.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	name, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(name)) != ""
}

// providerError describes an error of an SDK credential provider without the SDK's own messages,
// which can quote the answer of STS (and so the credential): an API error's code and message,
// else the SDK's code, else a fixed text.
func providerError(err error) string {
	var e *tcerr.TencentCloudSDKError
	switch {
	case errors.As(err, &e) && !strings.HasPrefix(e.Code, "ClientError"):
		return clip(e.Code+": "+e.Message, 1024)
	case errors.As(err, &e):
		return e.Code
	}
	return "the provider gave no credential"
}
