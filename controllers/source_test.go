package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

func TestBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 4: 40 * time.Second, 7: 5 * time.Minute, 50: 5 * time.Minute} {
		assert.Equal(t, want, retryBackoff.after(failures), "failure %d", failures)
	}
	for failures, want := range map[int]time.Duration{1: time.Minute, 3: 4 * time.Minute, 5: 16 * time.Minute, 6: 30 * time.Minute, 99: 30 * time.Minute} {
		assert.Equal(t, want, authRetryBackoff.after(failures), "failure %d", failures)
	}
}

func TestFailureReasons(t *testing.T) {
	for name, tc := range map[string]struct {
		err             error
		reason, message string
	}{
		"an API error, without its request ID": {&tcrapi.APIError{Code: "AuthFailure.SignatureFailure", Message: "bad signature", RequestID: "r-1"},
			"AuthFailure_SignatureFailure", "AuthFailure.SignatureFailure: bad signature"},
		"no cloud identity": {identityError{errors.New("none here")}, tcrv1.ReasonCloudCredentialUnavailable,
			"docker.instanceToken has no apiKeySecretRef and the manager's own cloud identity is unavailable: none here"},
		"no answer": {errors.New("TCR API tcr.tencentcloudapi.com: connection refused"), "TCRAPIUnreachable",
			"TCR API tcr.tencentcloudapi.com: connection refused"},
	} {
		t.Run(name, func(t *testing.T) {
			reason, message := failure(tc.err)
			assert.Equal(t, [2]string{tc.reason, tc.message}, [2]string{reason, message})
		})
	}
}

func TestMetricCodeIsBounded(t *testing.T) {
	assert.Equal(t, "AuthFailure.SignatureFailure", metricCode("AuthFailure.SignatureFailure"))
	assert.Equal(t, "Other", metricCode(`Code"{with}labels`))
	assert.Equal(t, "Other", metricCode(string(make([]byte, 65))))
}

func TestParseLogin(t *testing.T) {
	data, err := renderDockerConfig("r.example.com:5000", "robot", "pa:ss")
	assert.NoError(t, err)
	server, user, pass, ok := parseLogin(data)
	assert.True(t, ok)
	assert.Equal(t, [3]string{"r.example.com:5000", "robot", "pa:ss"}, [3]string{server, user, pass})

	// Only the auth field, as the original wrote for some logins.
	server, user, pass, ok = parseLogin([]byte(`{"auths":{"r.example.com":{"auth":"cm9ib3Q6cGE6c3M="}}}`))
	assert.True(t, ok)
	assert.Equal(t, [3]string{"r.example.com", "robot", "pa:ss"}, [3]string{server, user, pass})

	for _, bad := range []string{`not json`, `{"auths":{}}`, `{"auths":{"a":{"auth":"x"},"b":{"auth":"y"}}}`, `{"auths":{"a":{"auth":"%%%"}}}`} {
		_, _, _, ok := parseLogin([]byte(bad))
		assert.False(t, ok, bad)
	}
}
