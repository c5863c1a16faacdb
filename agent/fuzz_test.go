package agent

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzMerge checks Merge, for any file content and any hosts.yaml, against an oracle that does
// not go through Merge: the result holds exactly one block listing the entries (no marker for no
// entries); its other lines are the original's lines in order, byte for byte, but for lines the
// agent owns (markers, lines inside a BEGIN..END pair, lines it could have rendered) and the
// terminator of the last one; and a second pass changes nothing. Seeds are in
// testdata/fuzz/FuzzMerge.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n"), []byte("- {domain: demo.tencentcloudcr.com, ip: 10.0.0.2}\n"))
	f.Fuzz(func(t *testing.T, content, doc []byte) {
		cfg, err := ParseConfig(doc)
		if err != nil {
			cfg = Config{}
		}
		applied := Merge(content, cfg.Entries).Content

		if again := Merge(applied, cfg.Entries).Content; !bytes.Equal(applied, again) {
			t.Fatalf("applying twice changed the file:\nfirst:  %q\nsecond: %q", applied, again)
		}
		orig := oracleLines(content)
		foreign := checkBlock(t, oracleLines(applied), cfg.Entries)
		if !keptInOrder(orig, foreign) {
			t.Fatalf("the foreign lines were not kept in order, byte for byte:\noriginal: %q\napplied:  %q", content, applied)
		}
		ownsNothing := true
		for i := range orig {
			ownsNothing = ownsNothing && !owned(orig, i)
		}
		if ownsNothing && len(cfg.Entries) == 0 && !bytes.Equal(applied, content) {
			t.Fatalf("no entries changed a file the agent owns nothing of:\noriginal: %q\napplied:  %q", content, applied)
		}
	})
}

// oracleLine is a line as the oracle splits a file, independently of Merge's splitLines.
type oracleLine struct{ text, term string }

func oracleLines(content []byte) []oracleLine {
	var lines []oracleLine
	for _, l := range bytes.SplitAfter(content, []byte("\n")) {
		if len(l) == 0 {
			continue // what follows a final newline
		}
		s, term := string(l), ""
		switch {
		case strings.HasSuffix(s, "\r\n"):
			term = "\r\n"
		case strings.HasSuffix(s, "\n"):
			term = "\n"
		}
		lines = append(lines, oracleLine{text: strings.TrimSuffix(s, term), term: term})
	}
	return lines
}

func markerKind(text string) string {
	switch t := strings.TrimSpace(text); t {
	case BeginMarker, EndMarker:
		return t
	}
	return ""
}

// checkBlock checks that lines hold exactly one block listing entries in order, every line with
// one terminator (the END marker may have none when it ends the file), or no marker at all for
// no entries, and returns the other lines.
func checkBlock(t *testing.T, lines []oracleLine, entries []Entry) []oracleLine {
	t.Helper()
	var begins, ends []int
	for i, l := range lines {
		switch markerKind(l.text) {
		case BeginMarker:
			begins = append(begins, i)
		case EndMarker:
			ends = append(ends, i)
		}
	}
	if len(entries) == 0 {
		if len(begins)+len(ends) > 0 {
			t.Fatalf("no entries, yet markers remain: %q", lines)
		}
		return lines
	}
	if len(begins) != 1 || len(ends) != 1 || ends[0] != begins[0]+len(entries)+1 {
		t.Fatalf("want one block of %d entries, got BEGIN at %v and END at %v: %q", len(entries), begins, ends, lines)
	}
	b, e := begins[0], ends[0]
	if lines[b].text != BeginMarker || lines[e].text != EndMarker {
		t.Fatalf("the markers are not rendered exactly: %q", lines[b:e+1])
	}
	eol := lines[b].term
	for i, entry := range entries {
		if l := lines[b+1+i]; l.text != entry.IP+" "+entry.Domain || l.term != eol {
			t.Fatalf("block line %d is %q, want %q with terminator %q", i, l.text+l.term, entry.IP+" "+entry.Domain, eol)
		}
	}
	if lines[e].term != eol && (lines[e].term != "" || e != len(lines)-1) {
		t.Fatalf("the END marker's terminator is %q, want %q", lines[e].term, eol)
	}
	return append(slices.Clone(lines[:b]), lines[e+1:]...)
}

// owned reports whether line i of the original is one the agent may remove: a marker, a line
// between a BEGIN and the END that follows it with no marker in between, or a line it could have
// rendered from some hosts.yaml (which ParseConfig decides, not Merge).
func owned(lines []oracleLine, i int) bool {
	if markerKind(lines[i].text) != "" {
		return true
	}
	prev, next := "", ""
	for k := i - 1; k >= 0 && prev == ""; k-- {
		prev = markerKind(lines[k].text)
	}
	for k := i + 1; k < len(lines) && next == ""; k++ {
		next = markerKind(lines[k].text)
	}
	if prev == BeginMarker && next == EndMarker {
		return true
	}
	ip, domain, ok := strings.Cut(lines[i].text, " ")
	if !ok {
		return false
	}
	doc, err := json.Marshal([]Entry{{Domain: domain, IP: ip}})
	if err != nil {
		return false
	}
	cfg, err := ParseConfig(doc)
	return err == nil && len(cfg.Entries) == 1 && cfg.Entries[0] == Entry{Domain: domain, IP: ip}
}

// keptInOrder reports whether the foreign lines of the result are the original's lines in order,
// with only owned lines left out, byte for byte but for the last one's terminator, which may be
// added (the block follows it) or taken away (with a block that ended the file without one; an
// empty line then goes with it).
func keptInOrder(orig, foreign []oracleLine) bool {
	// ok[i][j]: orig[i:] gives foreign[j:].
	ok := make([][]bool, len(orig)+1)
	for i := range ok {
		ok[i] = make([]bool, len(foreign)+1)
	}
	ok[len(orig)][len(foreign)] = true
	endsUnterminated := len(orig) > 0 && orig[len(orig)-1].term == ""
	restOwned := true // orig[i+1:] is all owned
	for i := len(orig) - 1; i >= 0; i-- {
		own := owned(orig, i)
		for j := len(foreign); j >= 0; j-- {
			same := j < len(foreign) && orig[i].text == foreign[j].text &&
				(orig[i].term == foreign[j].term || j == len(foreign)-1)
			vanishes := orig[i].text == "" && j == len(foreign) && restOwned && !own && i < len(orig)-1 && endsUnterminated
			ok[i][j] = (own && ok[i+1][j]) || (same && ok[i+1][j+1]) || vanishes
		}
		restOwned = restOwned && own
	}
	return ok[0][0]
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
