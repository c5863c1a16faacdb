package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestOwnerLabelValue(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 100)
	tests := map[string]struct {
		name string
		want string
	}{
		"a name that fits a label value is used as it is":  {name: "imagepullsecret-sample", want: "imagepullsecret-sample"},
		"a name of exactly 63 characters is used as it is": {name: strings.Repeat("x", 63), want: strings.Repeat("x", 63)},
		"a longer name is cut and suffixed with a hash":    {name: long, want: strings.Repeat("a", 52) + "-" + hashPrefix(long)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := OwnerLabelValue(tc.name)
			assert.Equal(t, tc.want, got)
			assert.Empty(t, validation.IsValidLabelValue(got))
		})
	}
}

func hashPrefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}
