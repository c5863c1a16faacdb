// Package tcrapi calls the TCR API (service tcr, version 2019-09-24) through the Tencent Cloud
// SDK's generic client: CreateInstanceToken, DeleteInstanceToken and DescribeInstanceToken, the
// actions docker.instanceToken needs. The request and response types are small and local.
//
// The shapes follow the SDK's own tcr/v20190924 models and the API documentation:
// CreateInstanceToken takes RegistryId, TokenType ("temp", the default, one hour; or "longterm")
// and Desc, and answers Username, Token, ExpTime (a timestamp, in milliseconds in the documented
// examples) and TokenId (long-term tokens only); DescribeInstanceToken takes RegistryId, Limit
// and Offset and answers TotalCount and Tokens of {Id, Desc, RegistryId, Enabled, CreatedAt
// (a string), ExpiredAt (a timestamp)}, long-term tokens only; DeleteInstanceToken takes
// RegistryId and TokenId. Reading is lenient where the documented examples disagree with the
// SDK's types (a Username as a number, an ExpTime as a string, seconds instead of milliseconds).
//
// Bodies: the SDK reads response bodies itself, whole; the client's transport stops that read
// past 1 MiB, refuses encodings the SDK would decode without bound, and keeps http.Client from
// following redirects. Identity's providers use the SDK's own HTTP clients, which this package
// cannot bound.
package tcrapi

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultEndpoint is the public endpoint of the TCR API.
const DefaultEndpoint = "tcr.tencentcloudapi.com"

// ValidateEndpoint checks that endpoint is host[:port], with no scheme and no path.
func ValidateEndpoint(endpoint string) error {
	if endpoint == "" || strings.ContainsAny(endpoint, "/?#@ ") {
		return fmt.Errorf("%q is not host[:port] (no scheme, no path)", endpoint)
	}
	if host, port, err := net.SplitHostPort(endpoint); err == nil {
		if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not host[:port] (no scheme, no path)", endpoint)
		}
	}
	return nil
}
