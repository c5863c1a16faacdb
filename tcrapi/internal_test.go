package tcrapi

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEpoch(t *testing.T) {
	assert.Equal(t, time.UnixMilli(1735880997750).UTC(), epoch(1735880997750), "milliseconds")
	assert.Equal(t, time.Unix(1735880997, 0).UTC(), epoch(1735880997), "seconds")
	assert.Equal(t, time.Unix(99999999999, 0).UTC(), epoch(99999999999), "below 1e11 is seconds")
	assert.Equal(t, time.UnixMilli(100000000000).UTC(), epoch(100000000000), "from 1e11 on, milliseconds")
	assert.True(t, epoch(0).IsZero())
	assert.True(t, epoch(-5).IsZero())
}

func TestClip(t *testing.T) {
	assert.Equal(t, "abc", clip("abc", 3))
	assert.Equal(t, "ab", clip("abc", 2))
	assert.Equal(t, "a", clip("aé", 2), "not inside a character")
	assert.Equal(t, "aé", clip("aéz", 3))
}

func TestParseTime(t *testing.T) {
	want := time.Date(2020, 2, 26, 16, 49, 22, 0, time.UTC)
	for _, s := range []string{"2020-02-27T00:49:22+08:00", "2020-02-26T16:49:22Z", "2020-02-27 00:49:22", "2020-02-27 00:49:22 +0800 CST", " 2020-02-27 00:49:22 +0800 "} {
		assert.Equal(t, want, parseTime(s), s)
	}
	assert.True(t, parseTime("yesterday").IsZero())
	assert.True(t, parseTime("").IsZero())
}

func TestFlexInt(t *testing.T) {
	for in, want := range map[string]flexInt{`12`: 12, `"12"`: 12, `null`: 0, `1.7e+12`: 1700000000000, `2051237057817`: 2051237057817} {
		var f flexInt
		require.NoError(t, f.UnmarshalJSON([]byte(in)), in)
		assert.Equal(t, want, f, in)
	}
	var f flexInt
	assert.Error(t, f.UnmarshalJSON([]byte(`"soon"`)))
	assert.Error(t, f.UnmarshalJSON([]byte(`1.5`)))
}

// TestIdentityUnavailable: neither TKE pod identity nor a CVM role gives ErrNoIdentity; pod
// identity that is half configured says what is missing instead of falling back.
func TestIdentityUnavailable(t *testing.T) {
	for _, k := range tkeEnv {
		t.Setenv(k, "")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	old := cvmRoleURL
	t.Cleanup(func() { cvmRoleURL = old })

	cvmRoleURL = "http://" + closed + "/latest/meta-data/cam/security-credentials/"
	_, err = Identity()
	assert.ErrorIs(t, err, ErrNoIdentity)
	assert.EqualError(t, err, "no cloud identity: neither TKE pod identity (the variables TKE_REGION, TKE_PROVIDER_ID, "+
		"TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN) nor a CVM role (metadata service) is available")

	// A metadata service that names no role (404, as on a CVM without one).
	md := httptest.NewServer(http.NotFoundHandler())
	defer md.Close()
	cvmRoleURL = md.URL + "/latest/meta-data/cam/security-credentials/"
	_, err = Identity()
	assert.ErrorIs(t, err, ErrNoIdentity)

	t.Setenv("TKE_REGION", "ap-guangzhou")
	t.Setenv("TKE_ROLE_ARN", "qcs::cam::uin/100012345678:roleName/tcr")
	_, err = Identity()
	assert.EqualError(t, err, "TKE pod identity is configured (TKE_REGION, TKE_ROLE_ARN) but unusable: env TKE_PROVIDER_ID not exist")
}
