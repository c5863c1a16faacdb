package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcr-assistant/tcr-assistant/internal/faketcr"
	"github.com/tcr-assistant/tcr-assistant/internal/testregistry"
)

// Your own API key, as verify reads it from the environment, and the instance it mints on.
const (
	apiKeyID       = "AKIDverifyEXAMPLE0001"
	apiKeySecret   = "Key-verify-RIGHT-4d1c8a"
	wrongKeySecret = "Key-verify-WRONG-93be07"
	stsKeyID       = "AKIDverifySTSEXAMPLE02"
	stsKeySecret   = "Key-verify-STS-7f30aa"
	stsToken       = "Sts-verify-TOKEN-c5d2e1"
	instance       = "tcr-abcd1234"
	region         = "ap-guangzhou"
)

// tokenCR is an ImagePullSecret whose credential the controller mints; extra is added to its
// docker.instanceToken.
func tokenCR(name, server, registryID, extra string) string {
	return `apiVersion: tcr.tencentcloudcr.com/v1
kind: ImagePullSecret
metadata:
  name: ` + name + `
spec:
  namespaces: "*"
  docker:
    server: "` + server + `"
    instanceToken:
      registryId: ` + registryID + `
      region: ` + region + `
      apiKeySecretRef: {name: tcr-api-key}
` + extra
}

// setAPIKey sets the environment variables of your own API key; "" unsets one.
func setAPIKey(t *testing.T, id, key, token string) {
	t.Setenv(envSecretID, id)
	t.Setenv(envSecretKey, key)
	t.Setenv(envSessionToken, token)
}

// requestID is the RequestId of the fake's answers, a random UUID.
const requestID = `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`

// TestVerifyInstanceToken mints tokens on a fake TCR API with the API key of the environment and
// logs in with them to a registry whose token service accepts the fake's live tokens.
func TestVerifyInstanceToken(t *testing.T) {
	fake := faketcr.Start(t, faketcr.Options{
		Keys:       map[string]string{apiKeyID: apiKeySecret, stsKeyID: stsKeySecret},
		STSTokens:  map[string]string{stsKeyID: stsToken},
		Registries: []string{instance},
	})
	reg := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}, Authenticate: fake.Authenticate})
	endpoint := []string{"--registry-ca-file", reg.CAFile, "--tcr-api-endpoint", fake.Endpoint, "--tcr-api-ca-file", fake.CAFile}
	verifyTokens := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut := runVerify(t, append(args, endpoint...)...)
		// Neither a token, nor a SecretKey or STS token, nor a signature is printed.
		secrets := append(fake.Issued(), wrongKeySecret)
		for _, s := range secrets {
			assert.NotContains(t, out+errOut, s, "kubectl ips verify printed a token or a key")
		}
		for _, s := range []string{"TC3-HMAC-SHA256", "Signature=", "Authorization"} {
			assert.NotContains(t, out+errOut, s)
		}
		return code, out, errOut
	}
	// lastToken is the token the fake minted last, which must be a Temporary one of verify.
	lastToken := func(t *testing.T) faketcr.Token {
		t.Helper()
		tokens := fake.Tokens(instance)
		require.NotEmpty(t, tokens)
		tok := tokens[len(tokens)-1]
		assert.False(t, tok.LongTerm, "verify minted a LongTerm token")
		assert.Equal(t, "minted by kubectl ips verify", tok.Desc)
		assert.WithinDuration(t, time.Now().Add(time.Hour), tok.ExpiresAt, time.Minute)
		return tok
	}
	accepted := func(name string, tok faketcr.Token, note string) string {
		return name + ": Accepted: registry " + reg.Host + " accepted the credential (minted a Temporary token of instance " + instance +
			" with your API key" + note + "; it expires at " + tok.ExpiresAt.UTC().Format(time.RFC3339) + ")\n"
	}

	t.Run("your API key mints a Temporary token that the registry accepts", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		code, out, errOut := verifyTokens(t, "-f", writeFile(t, tokenCR("minted", reg.Host, instance, "")))
		assert.Equal(t, 0, code, errOut)
		assert.Empty(t, errOut)
		assert.Equal(t, accepted("minted", lastToken(t), ""), out)
	})

	t.Run("a LongTerm rule gets a Temporary token all the same", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		code, out, errOut := verifyTokens(t, "-f", writeFile(t, tokenCR("long", reg.Host, instance, "      type: LongTerm\n")))
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, accepted("long", lastToken(t), ", not a LongTerm one as the rule says: verify never creates a long-lived token"), out)
		for _, tok := range fake.Tokens(instance) {
			assert.False(t, tok.LongTerm)
		}
	})

	t.Run("temporary STS credentials: TENCENTCLOUD_SESSION_TOKEN", func(t *testing.T) {
		setAPIKey(t, stsKeyID, stsKeySecret, stsToken)
		code, out, errOut := verifyTokens(t, "-f", writeFile(t, tokenCR("sts", reg.Host, instance, "")))
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, accepted("sts", lastToken(t), ""), out)

		// Without it the API refuses the STS key.
		setAPIKey(t, stsKeyID, stsKeySecret, "")
		code, out, errOut = verifyTokens(t, "-f", writeFile(t, tokenCR("sts", reg.Host, instance, "")))
		assert.Equal(t, 2, code)
		assert.Empty(t, out)
		assert.Regexp(t, "^"+regexp.QuoteMeta("sts: minting a Temporary token of instance "+instance+" (region "+region+
			") with your API key failed: the TCR API answered AuthFailure.TokenFailure: The token is invalid. (request id ")+requestID+`\)`+"\n$", errOut)
	})

	t.Run("a password rule and a minted one in one file", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		file := writeFile(t, crYAML("password", reg.Host, rightPassword)+"---\n"+tokenCR("minted", reg.Host, instance, ""))
		code, out, errOut := verifyTokens(t, "-f", file)
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "password: Accepted: registry "+reg.Host+" accepted the credential\n"+accepted("minted", lastToken(t), ""), out)
	})

	t.Run("a minted token the registry rejects", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		// This registry knows nothing of the fake's tokens.
		other := testregistry.Start(t, testregistry.Options{Users: map[string]string{user: rightPassword}})
		code, out, errOut := runVerify(t, "-f", writeFile(t, tokenCR("elsewhere", other.Host, instance, "")),
			"--registry-ca-file", other.CAFile, "--tcr-api-endpoint", fake.Endpoint, "--tcr-api-ca-file", fake.CAFile)
		assert.Equal(t, 1, code, errOut)
		tok := lastToken(t)
		assert.Equal(t, "elsewhere: Rejected: the token service "+other.Host+" of registry "+other.Host+
			" rejected the credential (HTTP 401) (minted a Temporary token of instance "+instance+" with your API key; it expires at "+
			tok.ExpiresAt.UTC().Format(time.RFC3339)+")\n", out)
		assert.NotContains(t, out+errOut, tok.Token)
	})

	t.Run("a wrong SecretKey: the API's exact code and message, and the registry is not asked", func(t *testing.T) {
		setAPIKey(t, apiKeyID, wrongKeySecret, "")
		minted, before := len(fake.Tokens(instance)), reg.Requests()
		code, out, errOut := verifyTokens(t, "-f", writeFile(t, tokenCR("minted", reg.Host, instance, "")))
		assert.Equal(t, 2, code)
		assert.Empty(t, out)
		assert.Regexp(t, "^"+regexp.QuoteMeta("minted: minting a Temporary token of instance "+instance+" (region "+region+
			") with your API key failed: the TCR API answered AuthFailure.SignatureFailure: The provided credentials could not be validated. Please check your signature is correct. (request id ")+
			requestID+`\)`+"\n$", errOut)
		assert.Len(t, fake.Tokens(instance), minted)
		assert.Equal(t, before, reg.Requests())
	})

	t.Run("an instance that does not exist", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		code, out, errOut := verifyTokens(t, "-f", writeFile(t, tokenCR("missing", reg.Host, "tcr-missing0", "")))
		assert.Equal(t, 2, code)
		assert.Empty(t, out)
		assert.Regexp(t, "^"+regexp.QuoteMeta("missing: minting a Temporary token of instance tcr-missing0 (region "+region+
			") with your API key failed: the TCR API answered ResourceNotFound.TcrResourceNotFound: The TCR instance tcr-missing0 does not exist. (request id ")+
			requestID+`\)`+"\n$", errOut)
	})

	t.Run("no API key in the environment: nothing is asked", func(t *testing.T) {
		apiRequests, logins := fake.Requests(), reg.TokenRequests()
		for _, key := range [][2]string{{"", ""}, {apiKeyID, ""}, {"", apiKeySecret}} {
			setAPIKey(t, key[0], key[1], "")
			// The password rule is still verified; the minted one cannot be.
			file := writeFile(t, tokenCR("minted", reg.Host, instance, "")+"---\n"+crYAML("password", reg.Host, rightPassword))
			code, out, errOut := verifyTokens(t, "-f", file)
			assert.Equal(t, 2, code)
			assert.Equal(t, "password: Accepted: registry "+reg.Host+" accepted the credential\n", out)
			assert.Equal(t, "minted: cannot mint a token for docker.instanceToken: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY to your own API key\n", errOut)
		}
		assert.Equal(t, apiRequests, fake.Requests(), "the TCR API was called without a key")
		assert.Equal(t, logins+3, reg.TokenRequests(), "only the password rule logged in")
	})

	t.Run("the TCR API's CA is not trusted without --tcr-api-ca-file", func(t *testing.T) {
		setAPIKey(t, apiKeyID, apiKeySecret, "")
		before := fake.Calls("CreateInstanceToken")
		code, out, errOut := runVerify(t, "-f", writeFile(t, tokenCR("minted", reg.Host, instance, "")),
			"--registry-ca-file", reg.CAFile, "--tcr-api-endpoint", fake.Endpoint)
		assert.Equal(t, 2, code)
		assert.Empty(t, out)
		assert.Equal(t, "minted: minting a Temporary token of instance "+instance+" (region "+region+") with your API key failed: "+
			"CreateInstanceToken: TCR API "+fake.Endpoint+" presented a certificate signed by an unknown authority (add its CA with --tcr-api-ca-file)\n", errOut)
		assert.Equal(t, before, fake.Calls("CreateInstanceToken"))
	})
}

func TestVerifyInstanceTokenInvalidFlags(t *testing.T) {
	file := writeFile(t, tokenCR("minted", "r.example", instance, ""))
	code, out, errOut := runVerify(t, "-f", file, "--tcr-api-endpoint", "https://tcr.tencentcloudapi.com/")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Equal(t, `--tcr-api-endpoint: "https://tcr.tencentcloudapi.com/" is not host[:port] (no scheme, no path)`+"\n", errOut)

	missing := writeFile(t, "") + ".missing"
	code, _, errOut = runVerify(t, "-f", file, "--tcr-api-ca-file", missing)
	assert.Equal(t, 2, code)
	assert.Equal(t, "reading --tcr-api-ca-file: open "+missing+": no such file or directory\n", errOut)

	notPEM := writeFile(t, "not a certificate")
	code, _, errOut = runVerify(t, "-f", file, "--tcr-api-ca-file", notPEM)
	assert.Equal(t, 2, code)
	assert.Equal(t, "--tcr-api-ca-file "+notPEM+" holds no PEM certificate\n", errOut)

	// The usage says that verify mints only Temporary tokens, and with which key.
	code, _, errOut = runVerify(t, "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, errOut, "It always mints a Temporary token, which expires by itself (after an hour), even for a rule of\ntype LongTerm: verify never creates a long-lived token.")
	assert.Contains(t, errOut, "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY")
	assert.True(t, strings.Contains(errOut, "-tcr-api-endpoint string") && strings.Contains(errOut, `(default "tcr.tencentcloudapi.com")`), errOut)
}
