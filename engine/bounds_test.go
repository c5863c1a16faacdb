package engine

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// badList is n copies of the invalid namespace name "A", comma-separated: 2n-1 bytes, the
// hostile input of issue 13 (16,000 entries, 32 KB, used to cost 780 MiB).
func badList(n int) string { return strings.TrimSuffix(strings.Repeat("A,", n), ",") }

const msgBadA = `spec.namespaces: Invalid value: "A": is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`

// TestLongBadListsCostLittle checks that 16,000 and 64,000 bad entries are refused with 20
// messages that each name one entry, then one "and N more", and that the allocations do not
// grow with the entries: counted with testing.AllocsPerRun and measured in bytes with
// runtime.MemStats.
func TestLongBadListsCostLittle(t *testing.T) {
	for _, n := range []int{16_000, 64_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			spec := validSpec()
			spec.Namespaces = badList(n)
			errs, warnings := Validate(&spec)
			want := make([]string, 0, MaxErrorsPerField+1)
			for range MaxErrorsPerField {
				want = append(want, msgBadA)
			}
			want = append(want, fmt.Sprintf("spec.namespaces: Invalid value: and %d more errors", n-MaxErrorsPerField))
			got := make([]string, len(errs))
			for i, e := range errs {
				got[i] = e.Error()
			}
			assert.Equal(t, want, got)
			assert.Empty(t, warnings)

			allocs := testing.AllocsPerRun(5, func() { Validate(&spec) })
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			Validate(&spec)
			runtime.ReadMemStats(&after)
			bytes := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d entries (%d bytes): %.0f allocations, %d bytes allocated", n, len(spec.Namespaces), allocs, bytes)
			// The 20 messages and the compile of the (empty) selection: the same for any n.
			assert.Less(t, allocs, 1000.0, "allocations must not grow with the entries")
			assert.Less(t, bytes, uint64(256<<10), "bytes allocated must not grow with the entries")
		})
	}
}

// TestLongListsOfDuplicatesWarnBoundedly checks the warnings' cap: 64,000 duplicates give 20
// warnings and one "and N more".
func TestLongListsOfDuplicatesWarnBoundedly(t *testing.T) {
	spec := validSpec()
	spec.Namespaces = strings.TrimSuffix(strings.Repeat("a,", 64_000), ",")
	spec.ExcludeNamespaces = "a"
	errs, warnings := Validate(&spec)
	assert.Empty(t, errs)
	require.Len(t, warnings, MaxErrorsPerField+2)
	assert.Equal(t, `spec.namespaces: "a" is listed more than once; the duplicate is ignored`, warnings[0])
	assert.Equal(t, `spec.namespaces: and 63979 more warnings`, warnings[MaxErrorsPerField])
	assert.Equal(t, `spec.namespaces: "a" is also listed in spec.excludeNamespaces, so it is excluded`, warnings[MaxErrorsPerField+1])
}

// TestSelectorErrorsAreCappedPerField: a selector with 50 bad keys gets 20 errors and one
// "and 30 more"; the other fields keep their own errors.
func TestSelectorErrorsAreCappedPerField(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := range 50 {
		sel.MatchLabels[fmt.Sprintf("bad key %02d", i)] = "x"
	}
	spec := validSpec()
	spec.NamespaceSelector = sel
	spec.Docker.Server = ""
	errs, _ := Validate(&spec)
	require.Len(t, errs, MaxErrorsPerField+2)
	for _, e := range errs[:MaxErrorsPerField] {
		assert.True(t, strings.HasPrefix(e.Error(), `spec.namespaceSelector.matchLabels: Invalid value: "bad key `), e.Error())
	}
	assert.Equal(t, "spec.namespaceSelector: Invalid value: and 30 more errors", errs[MaxErrorsPerField].Error())
	assert.Equal(t, "spec.docker.server: Required value: set the registry host name, e.g. registry.example.com or registry.example.com:5000", errs[MaxErrorsPerField+1].Error())
}

func TestTopField(t *testing.T) {
	for path, want := range map[string]string{
		"spec.namespaceSelector.matchExpressions[0].values[1]": "spec.namespaceSelector",
		"spec.namespaces":                   "spec.namespaces",
		"spec.docker.passwordSecretRef.key": "spec.docker",
		"metadata.name":                     "metadata.name",
		"spec":                              "spec",
	} {
		assert.Equal(t, want, topField(path), path)
	}
}

// TestNameChecksAgreeWithKubernetes checks the allocation-free name checks against
// apimachinery's on random strings over an alphabet of every kind of character they treat
// differently, and on edge lengths.
func TestNameChecksAgreeWithKubernetes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "z", "0", "9", "-", ".", "A", "_", " ", "é"}
	inputs := []string{"", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "ab", strings.Repeat("b", 254)}
	for range 20_000 {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		inputs = append(inputs, b.String())
	}
	for _, s := range inputs {
		require.Equal(t, len(validation.IsDNS1123Label(s)) == 0, isDNS1123Label(s), "label %q", s)
		require.Equal(t, len(validation.IsDNS1123Subdomain(s)) == 0, isDNS1123Subdomain(s), "subdomain %q", s)
	}
}

// TestTheAdmissionCacheIsBoundedAndKeyedByContent checks that Cache.Validate compiles a spec's
// selection once, that a spec differing only in its lists or credential shares the verdict, that
// distinct specs never hold more than AdmissionCacheSize verdicts, that a spec too large to key
// is compiled every time and not kept, and that cached verdicts are the verdicts of that content.
func TestTheAdmissionCacheIsBoundedAndKeyedByContent(t *testing.T) {
	c := NewCache()
	spec := validSpec()
	spec.NamespaceExpression = `namespace.name.startsWith("team-")`
	errs, _ := c.Validate(&spec)
	require.Empty(t, errs)
	spec.Namespaces, spec.Docker.Password = "dev, prod", "other"
	errs, _ = c.Validate(&spec)
	require.Empty(t, errs)
	assert.Equal(t, int64(1), c.compiles.Load(), "the same selection is compiled once")

	bad := validSpec()
	bad.NamespaceExpression = "namespace.name"
	first, _ := c.Validate(&bad)
	second, _ := c.Validate(&bad)
	require.Len(t, first, 1)
	assert.Equal(t, first, second, "a cached refusal is the same refusal")
	assert.Equal(t, int64(2), c.compiles.Load())
	// The caller may append to what it gets without touching the cache.
	_ = append(first, first[0])
	third, _ := c.Validate(&bad)
	assert.Len(t, third, 1)

	for i := range 3 * AdmissionCacheSize {
		s := validSpec()
		s.NamespaceExpression = fmt.Sprintf(`namespace.name != "n-%d"`, i)
		errs, _ := c.Validate(&s)
		require.Empty(t, errs)
		require.LessOrEqual(t, c.VerdictsLen(), AdmissionCacheSize)
	}
	assert.Equal(t, AdmissionCacheSize, c.VerdictsLen())

	huge := validSpec()
	huge.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn}}}
	for i := range 2000 {
		huge.NamespaceSelector.MatchExpressions[0].Values = append(huge.NamespaceSelector.MatchExpressions[0].Values, fmt.Sprintf("value-%d", i))
	}
	before := c.compiles.Load()
	for range 3 {
		errs, _ := c.Validate(&huge)
		require.Empty(t, errs)
	}
	assert.Equal(t, before+3, c.compiles.Load(), "a selection over the key limit is compiled every time")
	_, ok := selectionKey(&huge)
	assert.False(t, ok)
}

// TestListsOverTheCRDLimitAreRefusedUnread: a list longer than the CRD allows, which only a
// review sent straight to the webhook can carry, is refused as the API server would refuse it.
func TestListsOverTheCRDLimitAreRefusedUnread(t *testing.T) {
	spec := validSpec()
	spec.ServiceAccounts = badList(tcrv1.MaxListLength)
	errs, _ := Validate(&spec)
	require.Len(t, errs, 1)
	assert.Equal(t, "spec.serviceAccounts: Too long: may not be more than 262144 bytes", errs[0].Error())
}
