package tcrapi

import (
	"errors"
	"strings"
)

// APIError is an error answered by the API: HTTP 200 with Response.Error.
type APIError struct {
	// Code is the API's error code, e.g. "AuthFailure.SignatureFailure".
	Code string
	// Message is the API's message (at most 1 KiB of it).
	Message string
	// RequestID is the API's RequestId of the call, for Tencent Cloud support.
	RequestID string
}

// Error is "<Code>: <Message>", with the request id in parentheses when there is one.
func (e *APIError) Error() string {
	s := e.Code + ": " + e.Message
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	return s
}

// Reason is Code as a condition reason: "." and every other character but ASCII letters, digits
// and "_" become "_", at most 128 characters, starting with a letter ("API_" is put before a code
// that does not; "Unknown" for an empty code).
func (e *APIError) Reason() string {
	if e.Code == "" {
		return "Unknown"
	}
	b := []byte(e.Code)
	for i, c := range b {
		if !isLetter(c) && (c < '0' || c > '9') && c != '_' {
			b[i] = '_'
		}
	}
	s := string(b)
	if !isLetter(s[0]) {
		s = "API_" + s
	}
	return clip(s, 128)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// IsAuthError tells whether err is an API error saying the credential may not do the call: a code
// starting with "AuthFailure" (unknown SecretId, wrong signature or clock, expired STS token) or
// "UnauthorizedOperation" (CAM refused the action), or ResourceNotFound.TcrResourceNotFound, which
// the API also answers for an instance the caller may not see.
func IsAuthError(err error) bool {
	code := apiCode(err)
	return strings.HasPrefix(code, "AuthFailure") || code == "UnauthorizedOperation" ||
		strings.HasPrefix(code, "UnauthorizedOperation.") || code == "ResourceNotFound.TcrResourceNotFound"
}

// IsNotFound tells whether err is an API error whose code starts with "ResourceNotFound": the
// instance or the token does not exist.
func IsNotFound(err error) bool {
	return strings.HasPrefix(apiCode(err), "ResourceNotFound")
}

// apiCode is the code of an *APIError in err's chain, "" when there is none.
func apiCode(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
