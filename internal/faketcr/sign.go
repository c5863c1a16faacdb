package faketcr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"time"
)

// This file checks TC3-HMAC-SHA256 signatures as the Tencent Cloud API documents them
// ("Signature v3"), written from the documentation and not from the SDK, so that a mistake in
// either shows. In short:
//
//	CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n
//	                   CanonicalHeaders \n SignedHeaders \n hex(sha256(payload))
//	StringToSign     = "TC3-HMAC-SHA256" \n X-TC-Timestamp \n <date>/<service>/tc3_request \n
//	                   hex(sha256(CanonicalRequest))
//	SecretSigning    = HMAC(HMAC(HMAC("TC3"+SecretKey, date), service), "tc3_request")
//	Signature        = hex(HMAC(SecretSigning, StringToSign))
//
// where date is the UTC date (2006-01-02) of X-TC-Timestamp, CanonicalHeaders are the signed
// headers as "key:value\n" with key and value lowercased and trimmed, in the order of
// SignedHeaders (lowercase keys joined by ";" in ascending order), the canonical URI is "/" and
// the canonical query string is empty for POST.

const algorithm = "TC3-HMAC-SHA256"

// authorization is the parsed Authorization header of a request.
type authorization struct {
	secretID      string
	scope         string // <date>/<service>/tc3_request
	signedHeaders []string
	signature     string
}

// parseAuthorization parses "TC3-HMAC-SHA256 Credential=<id>/<scope>, SignedHeaders=a;b,
// Signature=<hex>"; false when it does not have that form.
func parseAuthorization(h string) (authorization, bool) {
	var a authorization
	rest, ok := strings.CutPrefix(h, algorithm+" ")
	if !ok {
		return a, false
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, false
		}
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	id, scope, ok := strings.Cut(cred, "/")
	if !ok || id == "" || strings.Count(scope, "/") != 2 || signed == "" || sig == "" {
		return a, false
	}
	a.secretID, a.scope, a.signature = id, scope, sig
	a.signedHeaders = strings.Split(signed, ";")
	if !sort.StringsAreSorted(a.signedHeaders) {
		return a, false
	}
	for _, k := range a.signedHeaders {
		if k == "" || k != strings.ToLower(k) {
			return a, false
		}
	}
	return a, true
}

// canonicalRequest builds the canonical request of r with body payload and the signed headers.
// The Host header is r.Host, as Go's server keeps it out of r.Header.
func canonicalRequest(r *http.Request, signedHeaders []string, payload []byte) string {
	var headers strings.Builder
	for _, k := range signedHeaders {
		v := r.Header.Get(k)
		if k == "host" {
			v = r.Host
		}
		headers.WriteString(k + ":" + strings.ToLower(strings.TrimSpace(v)) + "\n")
	}
	hashedPayload := sha256Hex(payload)
	if r.Header.Get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" {
		hashedPayload = sha256Hex([]byte("UNSIGNED-PAYLOAD"))
	}
	query := r.URL.RawQuery
	if r.Method == http.MethodPost {
		query = ""
	}
	return strings.Join([]string{r.Method, "/", query, headers.String(), strings.Join(signedHeaders, ";"), hashedPayload}, "\n")
}

// scope is the credential scope of a request signed at timestamp for service.
func scope(timestamp int64, service string) string {
	return time.Unix(timestamp, 0).UTC().Format("2006-01-02") + "/" + service + "/tc3_request"
}

// stringToSign builds the string to sign from the timestamp header, as sent, and the scope.
func stringToSign(timestamp, scope, canonicalRequest string) string {
	return algorithm + "\n" + timestamp + "\n" + scope + "\n" + sha256Hex([]byte(canonicalRequest))
}

// signature is the hex signature of stringToSign with secretKey for the date and service of
// scope.
func signature(secretKey, scope, stringToSign string) string {
	parts := strings.Split(scope, "/") // date, service, "tc3_request"
	key := hmacSHA256([]byte("TC3"+secretKey), parts[0])
	key = hmacSHA256(key, parts[1])
	key = hmacSHA256(key, "tc3_request")
	return hex.EncodeToString(hmacSHA256(key, stringToSign))
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
