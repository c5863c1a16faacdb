package testregistry

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAddr: a registry on another address than 127.0.0.1 (the node suite's node IP, which Pods
// reach) listens there, and its certificate names that address, so a client with the CA trusts
// it, token service included.
func TestAddr(t *testing.T) {
	// Every address of 127.0.0.0/8 is the loopback on Linux.
	reg := Start(t, Options{Addr: "127.0.0.2:0", Users: map[string]string{"u": "p"}})
	require.True(t, strings.HasPrefix(reg.Host, "127.0.0.2:"), reg.Host)
	resp, err := (&http.Client{Transport: reg.Transport()}).Get("https://" + reg.Host + "/v2/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), `realm="https://`+reg.Host+TokenPath+`"`)
	reg.Push(t, "private/app", "1", "u", "p")
}
