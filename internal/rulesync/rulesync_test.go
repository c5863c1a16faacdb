package rulesync

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for name, tc := range map[string]struct {
		in, wantErr string
		wantNames   []string
	}{
		"an empty list":    {in: "[]", wantNames: nil},
		"the chart's JSON": {in: `[{"apiVersion":"tcr.tencentcloudcr.com/v1","kind":"ImagePullSecret","metadata":{"name":"a"},"spec":{"namespaces":"*","docker":{"server":"s","username":"u","password":"p"}}}]`, wantNames: []string{"a"}},
		"an unknown field": {in: `[{"metadata":{"name":"a"},"spec":{"namespace":"x"}}]`, wantErr: `json: unknown field "namespace"`},
		"a duplicate":      {in: `[{"metadata":{"name":"a"}},{"metadata":{"name":"a"}}]`, wantErr: `"a" is listed twice`},
		"no name":          {in: `[{"spec":{}}]`, wantErr: "an entry has no name"},
	} {
		t.Run(name, func(t *testing.T) {
			rules, err := Parse([]byte(tc.in))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, r := range rules {
				names = append(names, r.Name)
			}
			assert.Equal(t, tc.wantNames, names)
		})
	}
}
