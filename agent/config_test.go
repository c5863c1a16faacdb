package agent

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		doc      string
		want     []Entry
		disabled int
		invalid  []InvalidEntry
		wantErr  string
	}{
		"an empty document means no entries": {
			doc: "",
		},
		"an empty list means no entries": {
			doc: "[]",
		},
		"the original product's example parses": {
			doc:  "- domain: demo.tencentcloudcr.com\n  ip: 10.0.0.2\n  disabled: false\n",
			want: []Entry{{Domain: "demo.tencentcloudcr.com", IP: "10.0.0.2"}},
		},
		"disabled entries are counted, not applied": {
			doc:      "- {domain: a.example, ip: 10.0.0.1, disabled: true}\n- {domain: b.example, ip: 10.0.0.2}\n",
			want:     []Entry{{Domain: "b.example", IP: "10.0.0.2"}},
			disabled: 1,
		},
		"IPv6 addresses are written in canonical form": {
			doc:  "- {domain: v6.example, ip: '2001:DB8:0:0::0001'}\n",
			want: []Entry{{Domain: "v6.example", IP: "2001:db8::1"}},
		},
		"a domain may have one IPv4 and one IPv6 address": {
			doc:  "- {domain: a.example, ip: 10.0.0.1}\n- {domain: a.example, ip: 'fd00::1'}\n",
			want: []Entry{{Domain: "a.example", IP: "10.0.0.1"}, {Domain: "a.example", IP: "fd00::1"}},
		},
		"an exact duplicate is written once": {
			doc:  "- {domain: a.example, ip: 10.0.0.1}\n- {domain: a.example, ip: 10.0.0.1}\n",
			want: []Entry{{Domain: "a.example", IP: "10.0.0.1"}},
		},
		"a second address of the same family for a domain is refused": {
			doc:     "- {domain: a.example, ip: 10.0.0.1}\n- {domain: a.example, ip: 10.0.0.2}\n",
			want:    []Entry{{Domain: "a.example", IP: "10.0.0.1"}},
			invalid: []InvalidEntry{{Index: 1, Domain: "a.example", IP: "10.0.0.2", Reason: `domain "a.example" already maps to 10.0.0.1 in an earlier entry`}},
		},
		"document order is kept": {
			doc:  "- {domain: z.example, ip: 10.0.0.1}\n- {domain: a.example, ip: 10.0.0.2}\n",
			want: []Entry{{Domain: "z.example", IP: "10.0.0.1"}, {Domain: "a.example", IP: "10.0.0.2"}},
		},
		"unknown fields are ignored": {
			doc:  "- {domain: a.example, ip: 10.0.0.1, comment: office}\n",
			want: []Entry{{Domain: "a.example", IP: "10.0.0.1"}},
		},
		"invalid entries are skipped with a reason and the others applied": {
			doc: "- {domain: '*.example', ip: 10.0.0.1}\n" +
				"- {domain: Upper.Example, ip: 10.0.0.1}\n" +
				"- {domain: a.example, ip: 10.0.0.300}\n" +
				"- {domain: b.example, ip: 0.0.0.0}\n" +
				"- {domain: c.example, ip: '::'}\n" +
				"- {domain: d.example, ip: 'fe80::1%eth0'}\n" +
				"- {ip: 10.0.0.1}\n" +
				"- {domain: e.example}\n" +
				"- {domain: 10.0.0.1, ip: 10.0.0.1}\n" +
				"- just a string\n" +
				"- {domain: ok.example, ip: 10.0.0.9}\n",
			want: []Entry{{Domain: "ok.example", IP: "10.0.0.9"}},
			invalid: []InvalidEntry{
				{Index: 0, Domain: "*.example", IP: "10.0.0.1", Reason: `domain "*.example" is not a lowercase DNS-1123 subdomain: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
				{Index: 1, Domain: "Upper.Example", IP: "10.0.0.1", Reason: `domain "Upper.Example" is not a lowercase DNS-1123 subdomain: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
				{Index: 2, Domain: "a.example", IP: "10.0.0.300", Reason: `ip "10.0.0.300" is not an IPv4 or IPv6 address`},
				{Index: 3, Domain: "b.example", IP: "0.0.0.0", Reason: `ip "0.0.0.0" is the unspecified address`},
				{Index: 4, Domain: "c.example", IP: "::", Reason: `ip "::" is the unspecified address`},
				{Index: 5, Domain: "d.example", IP: "fe80::1%eth0", Reason: `ip "fe80::1%eth0" has an IPv6 zone, which hosts files do not support`},
				{Index: 6, IP: "10.0.0.1", Reason: "domain is empty"},
				{Index: 7, Domain: "e.example", Reason: "ip is empty"},
				{Index: 8, Domain: "10.0.0.1", IP: "10.0.0.1", Reason: `domain "10.0.0.1" is an IP address`},
				{Index: 9, Reason: "not a {domain, ip, disabled} object: got a string"},
			},
		},
		"a wrongly typed field makes only its entry invalid": {
			doc:     "- {domain: a.example, ip: 10.0.0.1, disabled: maybe}\n- {domain: b.example, ip: 10.0.0.2}\n",
			want:    []Entry{{Domain: "b.example", IP: "10.0.0.2"}},
			invalid: []InvalidEntry{{Index: 0, Reason: `not a {domain, ip, disabled} object: field "disabled": got a string`}},
		},
		"a document that is not a list is an error": {
			doc:     "domain: a.example\nip: 10.0.0.1\n",
			wantErr: "parsing hosts.yaml: want a YAML list of {domain, ip, disabled}, got a mapping",
		},
		"a scalar document is an error": {
			doc:     "42\n",
			wantErr: "parsing hosts.yaml: want a YAML list of {domain, ip, disabled}, got a scalar",
		},
		"a document that is not YAML is an error": {
			doc:     "- domain: [a\n",
			wantErr: "parsing hosts.yaml: yaml: line 1: did not find expected ',' or ']'",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.doc))
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.Entries)
			assert.Equal(t, tc.disabled, cfg.Disabled)
			assert.Equal(t, tc.invalid, cfg.Invalid)
		})
	}
}
