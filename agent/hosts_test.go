package agent

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const (
	begin = BeginMarker
	end   = EndMarker
)

func TestMerge(t *testing.T) {
	demo := []Entry{{Domain: "demo.tencentcloudcr.com", IP: "10.0.0.2"}}
	two := []Entry{{Domain: "demo.tencentcloudcr.com", IP: "10.0.0.2"}, {Domain: "v6.tencentcloudcr.com", IP: "fd00::2"}}
	tests := map[string]struct {
		content      string
		entries      []Entry
		want         string
		outside      []string
		staleMarkers int
	}{
		"an empty file gets just the block": {
			content: "",
			entries: demo,
			want:    begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
		},
		"the block is appended after the foreign lines": {
			content: "127.0.0.1 localhost\n",
			entries: two,
			want:    "127.0.0.1 localhost\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\nfd00::2 v6.tencentcloudcr.com\n" + end + "\n",
		},
		"a CRLF file gets a CRLF block": {
			content: "127.0.0.1 localhost\r\n::1 localhost\r\n",
			entries: demo,
			want:    "127.0.0.1 localhost\r\n::1 localhost\r\n" + begin + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + end + "\r\n",
		},
		"a file without a trailing newline still ends without one": {
			content: "127.0.0.1 localhost",
			entries: demo,
			want:    "127.0.0.1 localhost\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end,
		},
		"a CRLF file without a trailing newline still ends without one": {
			content: "127.0.0.1 localhost\r\n::1 localhost",
			entries: demo,
			want:    "127.0.0.1 localhost\r\n::1 localhost\r\n" + begin + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + end,
		},
		"an existing block is replaced where it stands": {
			content: "127.0.0.1 localhost\n" + begin + "\n10.0.0.1 old.example\n" + end + "\n# cloud-init\n10.1.1.1 node\n",
			entries: demo,
			want:    "127.0.0.1 localhost\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n# cloud-init\n10.1.1.1 node\n",
		},
		"no entries removes the block and nothing else": {
			content: "127.0.0.1 localhost\n" + begin + "\n10.0.0.1 old.example\n" + end + "\n10.1.1.1 node\n",
			entries: nil,
			want:    "127.0.0.1 localhost\n10.1.1.1 node\n",
		},
		"no entries on a file without a block changes nothing": {
			content: "127.0.0.1 localhost",
			want:    "127.0.0.1 localhost",
		},
		"comments, tabs and blank lines survive byte for byte": {
			content: "# The following lines are desirable for IPv6 capable hosts\n\t::1\tip6-localhost  ip6-loopback \n\n10.0.0.5\tdemo.tencentcloudcr.com\t# pinned by hand\n",
			entries: demo,
			want: "# The following lines are desirable for IPv6 capable hosts\n\t::1\tip6-localhost  ip6-loopback \n\n10.0.0.5\tdemo.tencentcloudcr.com\t# pinned by hand\n" +
				begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
			outside: []string{"demo.tencentcloudcr.com"},
		},
		"a managed domain in a comment is not reported as outside": {
			content: "# 10.0.0.5 demo.tencentcloudcr.com\n",
			entries: demo,
			want:    "# 10.0.0.5 demo.tencentcloudcr.com\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
		},
		"a managed domain written in capitals outside the block is reported": {
			content: "10.0.0.5 other DEMO.tencentcloudcr.com.\n",
			entries: demo,
			want:    "10.0.0.5 other DEMO.tencentcloudcr.com.\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
			outside: []string{"demo.tencentcloudcr.com"},
		},
		"duplicate blocks collapse into one at the first one's place": {
			content: "a\n" + begin + "\n10.0.0.1 x.example\n" + end + "\nb\n" + begin + "\n10.0.0.3 y.example\n" + end + "\nc\n",
			entries: demo,
			want:    "a\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\nb\nc\n",
		},
		"a BEGIN without END takes its entry lines and no foreign line": {
			content:      "a\n" + begin + "\n10.0.0.1 x.example\n127.0.0.1 localhost localhost.localdomain\n",
			entries:      demo,
			want:         "a\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n127.0.0.1 localhost localhost.localdomain\n",
			staleMarkers: 1,
		},
		"an END without BEGIN takes the entry lines before it and no foreign line": {
			content:      "# hand written\n10.0.0.1 x.example\n" + end + "\nb\n",
			entries:      nil,
			want:         "# hand written\nb\n",
			staleMarkers: 1,
		},
		"a BEGIN followed by another block is stale": {
			content:      begin + "\n10.0.0.1 x.example\n" + begin + "\n10.0.0.3 y.example\n" + end + "\n",
			entries:      demo,
			want:         begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
			staleMarkers: 1,
		},
		"markers with surrounding whitespace or CR are recognised": {
			content: "a\r\n  " + begin + " \r\n10.0.0.1 x.example\r\n\t" + end + "\r\n",
			entries: nil,
			want:    "a\r\n",
		},
		"a block at the end of a file without a trailing newline goes with it": {
			content: "a\r\nb\n" + begin + "\n10.0.0.1 x.example\n" + end,
			entries: nil,
			want:    "a\r\nb",
		},
		"replacing a block at the end keeps the foreign line's own terminator": {
			content: "a\r\nb\n" + begin + "\n10.0.0.1 x.example\n" + end,
			entries: demo,
			want:    "a\r\nb\n" + begin + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + end,
		},
		"a file holding only a block uses the block's line ending": {
			content: begin + "\r\n10.0.0.1 x.example\r\n" + end + "\r\n",
			entries: demo,
			want:    begin + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + end + "\r\n",
		},
		"a last line ending in a bare CR keeps it, and the block takes the CRLF it ends with": {
			content: "127.0.0.1 localhost\r",
			entries: demo,
			want:    "127.0.0.1 localhost\r\r\n" + begin + "\r\n10.0.0.2 demo.tencentcloudcr.com\r\n" + end,
		},
		"a last line ending in a bare CR after LF lines keeps it, and the block is LF": {
			content: "a\nb\r",
			entries: demo,
			want:    "a\nb\r\r\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end,
		},
		"a BEGIN without END does not take a foreign line with the unspecified IPv4 address": {
			content:      "a\n" + begin + "\n10.0.0.1 x.example\n0.0.0.0 ads.example\n",
			entries:      demo,
			want:         "a\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n0.0.0.0 ads.example\n",
			staleMarkers: 1,
		},
		"an END without BEGIN does not take a foreign line with the unspecified IPv6 address": {
			content:      "a\n:: ads.example\n10.0.0.1 x.example\n" + end + "\n",
			entries:      nil,
			want:         "a\n:: ads.example\n",
			staleMarkers: 1,
		},
		"a lone CR is part of a line, not a terminator": {
			content: "a\rb\n",
			entries: demo,
			want:    "a\rb\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end + "\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res := Merge([]byte(tc.content), tc.entries)
			assert.Equal(t, tc.want, string(res.Content))
			assert.Equal(t, tc.outside, res.Outside)
			assert.Equal(t, tc.staleMarkers, res.StaleMarkers)

			again := Merge(res.Content, tc.entries)
			assert.Equal(t, string(res.Content), string(again.Content), "applying twice changes nothing")
			assert.Zero(t, again.StaleMarkers, "a merged file has no stale marker")
		})
	}
}

func TestCleanup(t *testing.T) {
	tests := map[string]struct {
		content string
		want    string
	}{
		"a file without a block is unchanged": {
			content: "127.0.0.1 localhost\n",
			want:    "127.0.0.1 localhost\n",
		},
		"the block is removed and nothing else": {
			content: "127.0.0.1 localhost\n" + begin + "\n10.0.0.1 x.example\n" + end + "\n# after\n",
			want:    "127.0.0.1 localhost\n# after\n",
		},
		"a last line ending in a bare CR gets its CR back": {
			content: "a\nb\r\r\n" + begin + "\n10.0.0.2 demo.tencentcloudcr.com\n" + end,
			want:    "a\nb\r",
		},
		"an empty block is removed": {
			content: begin + "\n" + end + "\n",
			want:    "",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, string(Cleanup([]byte(tc.content))))
		})
	}
}

func TestRenderBlock(t *testing.T) {
	tests := map[string]struct {
		entries []Entry
		eol     string
		want    string
	}{
		"no entries render nothing": {
			eol:  "\n",
			want: "",
		},
		"entries render one line each between the markers": {
			entries: []Entry{{Domain: "a.example", IP: "10.0.0.1"}, {Domain: "b.example", IP: "fd00::1"}},
			eol:     "\r\n",
			want:    begin + "\r\n10.0.0.1 a.example\r\nfd00::1 b.example\r\n" + end + "\r\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, RenderBlock(tc.entries, tc.eol))
		})
	}
}
