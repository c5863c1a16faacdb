package agent

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"
)

// FuzzMerge checks, for any file content and any hosts.yaml: foreign lines survive byte for byte,
// applying twice changes nothing, and cleanup after apply restores the original content. Seeds
// are in testdata/fuzz/FuzzMerge.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n"), []byte("- {domain: demo.tencentcloudcr.com, ip: 10.0.0.2}\n"))
	f.Fuzz(func(t *testing.T, content, doc []byte) {
		cfg, err := ParseConfig(doc)
		if err != nil {
			cfg = Config{}
		}
		applied := Merge(content, cfg.Entries).Content

		again := Merge(applied, cfg.Entries).Content
		if !bytes.Equal(applied, again) {
			t.Fatalf("applying twice changed the file:\nfirst:  %q\nsecond: %q", applied, again)
		}
		if got, want := Cleanup(applied), Cleanup(content); !bytes.Equal(got, want) {
			t.Fatalf("cleanup after apply differs from cleanup of the original:\ngot:  %q\nwant: %q", got, want)
		}
		if hasMarker(content) {
			return // the original's own stale block is not foreign content
		}
		if got := Cleanup(applied); !bytes.Equal(got, content) {
			t.Fatalf("cleanup after apply did not restore the original:\noriginal: %q\napplied:  %q\ncleaned:  %q", content, applied, got)
		}
		for _, e := range cfg.Entries {
			if !bytes.Contains(applied, []byte(e.IP+" "+e.Domain)) {
				t.Fatalf("the applied file lacks the line of %s:\n%q", e.Domain, applied)
			}
		}
		// Foreign lines survive byte for byte and in order: the applied file is the original
		// with the block inserted at one place (plus, when the original did not end with a
		// newline, the terminator the block needs before it).
		i := bytes.Index(applied, []byte(BeginMarker))
		if len(cfg.Entries) == 0 {
			if !bytes.Equal(applied, content) {
				t.Fatalf("no entries changed a file without a block:\n%q\n%q", content, applied)
			}
			return
		}
		before := applied[:max(i, 0)]
		if i < 0 || !(bytes.HasPrefix(content, before) || bytes.Equal(content, bytes.TrimSuffix(bytes.TrimSuffix(before, []byte("\n")), []byte("\r")))) {
			t.Fatalf("the lines before the block changed:\noriginal: %q\napplied:  %q", content, applied)
		}
	})
}

func hasMarker(content []byte) bool {
	for _, l := range splitLines(content) {
		if isMarker(l.text, BeginMarker) || isMarker(l.text, EndMarker) {
			return true
		}
	}
	return false
}

// FuzzParseConfig checks, for any document, that every accepted entry renders as a line the
// agent recognises as its own (so a half-deleted block can always be cleaned up), with a
// canonical address, and that no domain gets two addresses of one family.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("- {domain: demo.tencentcloudcr.com, ip: 10.0.0.2, disabled: false}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := ParseConfig(doc)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range cfg.Entries {
			if !isEntryLine(e.IP + " " + e.Domain) {
				t.Fatalf("entry %+v renders as a line the agent does not recognise", e)
			}
			addr := netip.MustParseAddr(e.IP)
			if addr.String() != e.IP {
				t.Fatalf("entry %+v has a non-canonical address", e)
			}
			key := e.Domain + "/" + strconv.FormatBool(addr.Is4())
			if seen[key] {
				t.Fatalf("domain %s has two addresses of one family", e.Domain)
			}
			seen[key] = true
		}
	})
}
