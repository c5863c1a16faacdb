package faketcr

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The example of Tencent Cloud's "Signature v3" documentation: CVM's DescribeInstances, signed
// at 1551113065 (2019-02-25 UTC). Its versions published the signature for two example keys.
const (
	docTimestamp     = 1551113065
	docPayload       = `{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`
	docHashedPayload = "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
	docHashedCanon   = "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
	docSecretID      = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
	docSecretKey     = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
	docSignature     = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
	docMaskedKey     = "Gu5t9xGARNpq86cd98joQYCN3*******"
	docMaskedSig     = "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
)

// docRequest is the documented request, as the fake's server would receive it.
func docRequest(payload, authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://cvm.tencentcloudapi.com/", strings.NewReader(payload))
	r.Host = "cvm.tencentcloudapi.com"
	r.Header.Set("Authorization", authorization)
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	r.Header.Set("X-TC-Action", "DescribeInstances")
	r.Header.Set("X-TC-Timestamp", strconv.Itoa(docTimestamp))
	r.Header.Set("X-TC-Version", "2017-03-12")
	r.Header.Set("X-TC-Region", "ap-guangzhou")
	return r
}

func docAuthorization(secretID, sig string) string {
	return "TC3-HMAC-SHA256 Credential=" + secretID + "/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=" + sig
}

// TestSignatureOfTheDocumentation: every step of the signature matches the documented example.
func TestSignatureOfTheDocumentation(t *testing.T) {
	r := docRequest(docPayload, docAuthorization(docSecretID, docSignature))
	a, ok := parseAuthorization(r.Header.Get("Authorization"))
	require.True(t, ok)
	assert.Equal(t, authorization{secretID: docSecretID, scope: "2019-02-25/cvm/tc3_request",
		signedHeaders: []string{"content-type", "host"}, signature: docSignature}, a)

	canon := canonicalRequest(r, a.signedHeaders, []byte(docPayload))
	assert.Equal(t, "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n"+docHashedPayload, canon)
	assert.Equal(t, docHashedCanon, sha256Hex([]byte(canon)))

	sc := scope(docTimestamp, "cvm")
	assert.Equal(t, "2019-02-25/cvm/tc3_request", sc)
	sts := stringToSign(strconv.Itoa(docTimestamp), sc, canon)
	assert.Equal(t, "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"+docHashedCanon, sts)
	assert.Equal(t, docSignature, signature(docSecretKey, sc, sts))
	assert.Equal(t, docMaskedSig, signature(docMaskedKey, sc, sts))
}

// docServer is a fake that knows the documentation's key, with its clock at now.
func docServer(now time.Time) *Server {
	clock := func() time.Time { return now }
	return &Server{now: clock, signingNow: clock, keys: map[string]string{docSecretID: docSecretKey}, stsTokens: map[string]string{}}
}

// TestVerifyTheDocumentedRequest: the fake accepts the documented request, and refuses it
// changed in any signed part, from an unknown key, or out of the 300 s window, with the API's
// codes.
func TestVerifyTheDocumentedRequest(t *testing.T) {
	at := time.Unix(docTimestamp, 0)
	check := func(s *Server, r *http.Request, payload string) string {
		t.Helper()
		if e := s.verify(r, []byte(payload), "cvm"); e != nil {
			return e.code
		}
		return ""
	}
	good := docAuthorization(docSecretID, docSignature)
	assert.Empty(t, check(docServer(at), docRequest(docPayload, good), docPayload))
	assert.Empty(t, check(docServer(at.Add(MaxSkew)), docRequest(docPayload, good), docPayload), "300 s late")
	assert.Empty(t, check(docServer(at.Add(-MaxSkew)), docRequest(docPayload, good), docPayload), "300 s early")
	assert.Equal(t, CodeSignatureExpire, check(docServer(at.Add(MaxSkew+time.Second)), docRequest(docPayload, good), docPayload))
	assert.Equal(t, CodeSignatureExpire, check(docServer(at.Add(-MaxSkew-time.Second)), docRequest(docPayload, good), docPayload))

	tampered := strings.Replace(docPayload, `"Limit": 1`, `"Limit": 2`, 1)
	assert.Equal(t, CodeSignatureFailure, check(docServer(at), docRequest(tampered, good), tampered), "another body")
	r := docRequest(docPayload, good)
	r.Host = "cvm.ap-guangzhou.tencentcloudapi.com"
	assert.Equal(t, CodeSignatureFailure, check(docServer(at), r, docPayload), "another host")
	r = docRequest(docPayload, good)
	r.Header.Set("Content-Type", "application/json")
	assert.Equal(t, CodeSignatureFailure, check(docServer(at), r, docPayload), "another content type")
	assert.Equal(t, CodeSignatureFailure, check(docServer(at), docRequest(docPayload, docAuthorization(docSecretID, docMaskedSig)), docPayload), "another key's signature")
	assert.Equal(t, CodeSignatureFailure, check(docServer(at), docRequest(docPayload, strings.Replace(good, "/cvm/", "/tcr/", 1)), docPayload), "another scope")

	assert.Equal(t, CodeSecretIDNotFound, check(docServer(at), docRequest(docPayload, docAuthorization("AKIDunknown", docSignature)), docPayload))
	for _, bad := range []string{
		"", "TC3-HMAC-SHA1 " + good[len("TC3-HMAC-SHA256 "):],
		strings.Replace(good, "SignedHeaders=content-type;host", "SignedHeaders=host;content-type", 1),
		strings.Replace(good, "SignedHeaders=content-type;host", "SignedHeaders=host", 1),
		strings.Replace(good, ", Signature="+docSignature, "", 1),
	} {
		code := check(docServer(at), docRequest(docPayload, bad), docPayload)
		if bad == "" {
			assert.Equal(t, CodeMissingParameter, code)
			continue
		}
		assert.Equal(t, CodeInvalidAuthorization, code, bad)
	}

	// A temporary key needs its X-TC-Token.
	s := docServer(at)
	s.stsTokens[docSecretID] = "sts-token"
	assert.Equal(t, CodeTokenFailure, check(s, docRequest(docPayload, good), docPayload))
	r = docRequest(docPayload, good)
	r.Header.Set("X-TC-Token", "sts-token")
	assert.Empty(t, check(s, r, docPayload))
}

const (
	testID       = "AKIDfaketcrTEST"
	testKey      = "SK-faketcr-7c21d9"
	testRegistry = "tcr-faketest"
)

// call sends a request signed by the test itself for action with body, and returns the decoded
// Response. tamper, when set, changes the request after signing.
func call(t *testing.T, s *Server, secretID, secretKey, action, body string, tamper func(*http.Request)) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://"+s.Endpoint+"/", strings.NewReader(body))
	require.NoError(t, err)
	// Signed at the fake's time, which is the API's time for the 300 s window.
	at := s.now().Unix()
	ts := strconv.FormatInt(at, 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", action)
	req.Header.Set("X-TC-Version", Version)
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("X-TC-Region", "ap-guangzhou")
	canon := "POST\n/\n\ncontent-type:application/json\nhost:" + s.Endpoint + "\n\ncontent-type;host\n" + sha256Hex([]byte(body))
	sc := scope(at, Service)
	req.Header.Set("Authorization", docAuthorizationFor(secretID, sc, signature(secretKey, sc, stringToSign(ts, sc, canon))))
	if tamper != nil {
		tamper(req)
	}
	tr := &http.Transport{}
	tr.TLSClientConfig = newTLSConfig(s)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the API answers errors with HTTP 200 too")
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out struct{ Response map[string]any }
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	require.NoError(t, d.Decode(&out), string(raw))
	require.NotEmpty(t, out.Response["RequestId"], "every answer has a RequestId")
	return out.Response
}

func newTLSConfig(s *Server) *tls.Config { return &tls.Config{RootCAs: s.CAPool} }

func docAuthorizationFor(secretID, scope, sig string) string {
	return fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s", secretID, scope, sig)
}

// apiErr is the Error of a Response, nil when there is none.
func apiErr(resp map[string]any) map[string]any {
	e, _ := resp["Error"].(map[string]any)
	return e
}

func start(t *testing.T, opts Options) *Server {
	if opts.Keys == nil {
		opts.Keys = map[string]string{testID: testKey}
	}
	if opts.Registries == nil {
		opts.Registries = []string{testRegistry}
	}
	return Start(t, opts)
}

// TestErrorsAsTheAPI: failures are HTTP 200 with Response.Error; unauthenticated calls are not
// counted.
func TestErrorsAsTheAPI(t *testing.T) {
	s := start(t, Options{})
	create := `{"RegistryId":"` + testRegistry + `"}`

	resp := call(t, s, testID, "wrong-key", "CreateInstanceToken", create, nil)
	assert.Equal(t, map[string]any{"Code": CodeSignatureFailure,
		"Message": "The provided credentials could not be validated. Please check your signature is correct."}, apiErr(resp))
	assert.Equal(t, CodeSecretIDNotFound, apiErr(call(t, s, "AKIDnobody", testKey, "CreateInstanceToken", create, nil))["Code"])
	assert.Equal(t, CodeSignatureFailure, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create,
		func(r *http.Request) { r.Header.Set("Content-Type", "application/json; charset=utf-8") }))["Code"])
	assert.Equal(t, CodeMissingParameter, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create,
		func(r *http.Request) { r.Header.Del("X-TC-Region") }))["Code"])
	assert.Equal(t, 0, s.Calls("CreateInstanceToken"), "refused requests are not calls")
	assert.Equal(t, 4, s.Requests())

	assert.Equal(t, CodeNoSuchVersion, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create,
		func(r *http.Request) { r.Header.Set("X-TC-Version", "2018-01-01") }))["Code"], "X-TC-Version is not signed")
	assert.Equal(t, CodeInvalidAction, apiErr(call(t, s, testID, testKey, "CreateInstance", create, nil))["Code"])
	assert.Equal(t, CodeUnknownParameter, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", `{"RegistryID":"x"}`, nil))["Code"])
	assert.Equal(t, map[string]any{"Code": CodeRegistryNotFound, "Message": "The TCR instance tcr-other does not exist."},
		apiErr(call(t, s, testID, testKey, "CreateInstanceToken", `{"RegistryId":"tcr-other"}`, nil)))
	assert.Equal(t, CodeInvalidParameterValue, apiErr(call(t, s, testID, testKey, "CreateInstanceToken",
		`{"RegistryId":"`+testRegistry+`","TokenType":"forever"}`, nil))["Code"])

	s.FailNext("CreateInstanceToken", "InternalError.DbError", "db down")
	assert.Equal(t, map[string]any{"Code": "InternalError.DbError", "Message": "db down"},
		apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create, nil)))
	assert.Nil(t, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create, nil)), "FailNext fails one call")
	assert.Equal(t, 6, s.Calls("CreateInstanceToken"), "authenticated calls, failed or not")
	assert.Equal(t, 1, s.Calls("CreateInstance"))

	// A rotated key: the old one is refused from now on.
	s.SetKey(testID, "SK-faketcr-rotated")
	assert.Equal(t, CodeSignatureFailure, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", create, nil))["Code"])
	assert.Nil(t, apiErr(call(t, s, testID, "SK-faketcr-rotated", "CreateInstanceToken", create, nil)))
	s.SetKey(testID, "")
	assert.Equal(t, CodeSecretIDNotFound, apiErr(call(t, s, testID, "SK-faketcr-rotated", "CreateInstanceToken", create, nil))["Code"])
}

// TestTokens: the three actions, paging, and the life of a token as Authenticate sees it.
func TestTokens(t *testing.T) {
	now := time.Now()
	s := start(t, Options{Now: func() time.Time { return now }})

	temp := call(t, s, testID, testKey, "CreateInstanceToken", `{"RegistryId":"`+testRegistry+`","TokenType":"temp"}`, nil)
	assert.Equal(t, DefaultUsername, temp["Username"])
	assert.Equal(t, json.Number(strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)), temp["ExpTime"], "milliseconds")
	assert.NotContains(t, temp, "TokenId", "temporary tokens have no TokenId")
	long := call(t, s, testID, testKey, "CreateInstanceToken", `{"RegistryId":"`+testRegistry+`","TokenType":"longterm","Desc":"d1"}`, nil)
	assert.Equal(t, json.Number("0"), long["ExpTime"])
	id := long["TokenId"].(string)
	assert.Len(t, id, 20)

	tokens := s.Tokens(testRegistry)
	require.Len(t, tokens, 2)
	assert.Equal(t, Token{ID: tokens[0].ID, RegistryID: testRegistry, Username: DefaultUsername, Token: temp["Token"].(string),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), Enabled: true}, tokens[0])
	assert.Equal(t, Token{ID: id, RegistryID: testRegistry, Username: DefaultUsername, Token: long["Token"].(string),
		Desc: "d1", LongTerm: true, CreatedAt: now, Enabled: true}, tokens[1])
	issued := s.Issued()
	assert.Subset(t, issued, []string{temp["Token"].(string), long["Token"].(string), testKey})
	assert.Len(t, issued, 5, "the two tokens, the key and the two signatures")

	for i := 2; i <= 5; i++ {
		call(t, s, testID, testKey, "CreateInstanceToken", fmt.Sprintf(`{"RegistryId":%q,"TokenType":"longterm","Desc":"d%d"}`, testRegistry, i), nil)
	}
	page := call(t, s, testID, testKey, "DescribeInstanceToken", `{"RegistryId":"`+testRegistry+`","Limit":2,"Offset":4}`, nil)
	assert.Equal(t, json.Number("5"), page["TotalCount"], "long-term tokens only")
	list := page["Tokens"].([]any)
	require.Len(t, list, 1)
	assert.Equal(t, map[string]any{"Id": s.Tokens(testRegistry)[5].ID, "Desc": "d5", "RegistryId": testRegistry, "Enabled": true,
		"CreatedAt": now.In(chinaTime).Format(time.RFC3339), "ExpiredAt": json.Number("0")}, list[0])
	assert.Empty(t, call(t, s, testID, testKey, "DescribeInstanceToken", `{"RegistryId":"`+testRegistry+`","Offset":9}`, nil)["Tokens"])

	// Live tokens log in; expired, revoked and deleted ones do not, nor another user name.
	assert.True(t, s.Authenticate(DefaultUsername, temp["Token"].(string)))
	assert.False(t, s.Authenticate("someone", temp["Token"].(string)))
	assert.False(t, s.Authenticate(DefaultUsername, "not-a-token"))
	now = now.Add(time.Hour)
	assert.False(t, s.Authenticate(DefaultUsername, temp["Token"].(string)), "expired after an hour")
	assert.True(t, s.Authenticate(DefaultUsername, long["Token"].(string)))
	require.True(t, s.Revoke(id))
	assert.False(t, s.Authenticate(DefaultUsername, long["Token"].(string)))
	assert.False(t, s.Revoke("no-such-token"))
	second := s.Tokens(testRegistry)[2]
	require.True(t, s.Expire(second.ID))
	assert.False(t, s.Authenticate(DefaultUsername, second.Token))

	assert.Nil(t, apiErr(call(t, s, testID, testKey, "DeleteInstanceToken", `{"RegistryId":"`+testRegistry+`","TokenId":"`+id+`"}`, nil)))
	assert.Len(t, s.Tokens(testRegistry), 5)
	assert.Equal(t, map[string]any{"Code": CodeResourceNotFound, "Message": "The instance token " + id + " does not exist."},
		apiErr(call(t, s, testID, testKey, "DeleteInstanceToken", `{"RegistryId":"`+testRegistry+`","TokenId":"`+id+`"}`, nil)))
	assert.Equal(t, []int{6, 2, 2}, []int{s.Calls("CreateInstanceToken"), s.Calls("DescribeInstanceToken"), s.Calls("DeleteInstanceToken")})
}

// TestAnotherAddress: the fake listens where Addr says, with a certificate for that address.
func TestAnotherAddress(t *testing.T) {
	s := start(t, Options{Addr: "127.0.0.2:0"})
	assert.True(t, strings.HasPrefix(s.Endpoint, "127.0.0.2:"), s.Endpoint)
	assert.Nil(t, apiErr(call(t, s, testID, testKey, "CreateInstanceToken", `{"RegistryId":"`+testRegistry+`"}`, nil)))
}
