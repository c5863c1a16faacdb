package credcheck

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseChallenge(t *testing.T) {
	tests := map[string]struct {
		header     string
		wantScheme string
		wantParams map[string]string
	}{
		"bearer as distribution sends it": {
			header:     `Bearer realm="https://r.example/service/token",service="r.example",scope="repository:a/b:pull,push"`,
			wantScheme: "bearer",
			wantParams: map[string]string{"realm": "https://r.example/service/token", "service": "r.example", "scope": "repository:a/b:pull,push"},
		},
		"basic": {header: `Basic realm="Registry Realm"`, wantScheme: "basic", wantParams: map[string]string{"realm": "Registry Realm"}},
		"spaces, case and escapes": {
			header:     ` BEARER Realm = "https://r/t" , error="in\"valid" ,token=abc`,
			wantScheme: "bearer",
			wantParams: map[string]string{"realm": "https://r/t", "error": `in"valid`, "token": "abc"},
		},
		"unterminated quote":  {header: `Bearer realm="https://r/t`, wantScheme: "bearer", wantParams: map[string]string{"realm": "https://r/t"}},
		"scheme only":         {header: `Negotiate`, wantScheme: "negotiate", wantParams: map[string]string{}},
		"garbage after param": {header: `Bearer realm=x junk`, wantScheme: "bearer", wantParams: map[string]string{"realm": "x"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			scheme, params := parseChallenge(tt.header)
			assert.Equal(t, tt.wantScheme, scheme)
			assert.Equal(t, tt.wantParams, params)
		})
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://r/t",service="r",scope="repository:a:pull"`)
	f.Add(`Basic realm="x\"y"`)
	f.Fuzz(func(t *testing.T, h string) { parseChallenge(h) })
}
