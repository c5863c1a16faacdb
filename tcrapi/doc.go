// Package tcrapi calls the TCR API (service tcr, version 2019-09-24) through the Tencent Cloud
// SDK's generic client: CreateInstanceToken, DeleteInstanceToken and DescribeInstanceToken, the
// actions docker.instanceToken needs. The request and response types are small and local.
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
