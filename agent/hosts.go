package agent

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
)

// BeginMarker and EndMarker delimit the managed block. They name the project so that an operator
// reading /etc/hosts knows who wrote the lines and that editing them is pointless.
const (
	BeginMarker = "# BEGIN tcr-assistant managed hosts (do not edit)"
	EndMarker   = "# END tcr-assistant managed hosts"
)

// MergeResult is the outcome of merging the managed block into a hosts file.
type MergeResult struct {
	// Content is the new file content.
	Content []byte
	// Outside lists, sorted, the managed domains that also appear on a line outside the block:
	// whichever line comes first wins for most resolvers, so the operator should hear of it.
	Outside []string
	// StaleMarkers counts marker lines that did not form a complete BEGIN..END pair: a block
	// someone half deleted, which Merge removed.
	StaleMarkers int
}

// line is one line of a file: its text and its terminator ("\n", "\r\n", or "" for a last line
// without one), so that the file can be put back together byte for byte.
type line struct {
	text, term string
}

func splitLines(content []byte) []line {
	var lines []line
	s := string(content)
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, line{text: s})
			break
		}
		if i > 0 && s[i-1] == '\r' {
			lines = append(lines, line{text: s[:i-1], term: "\r\n"})
		} else {
			lines = append(lines, line{text: s[:i], term: "\n"})
		}
		s = s[i+1:]
	}
	return lines
}

func isMarker(text, marker string) bool { return strings.TrimSpace(text) == marker }

// isEntryLine reports whether a line is one the agent could have rendered ("IP domain" for an
// entry ParseConfig accepts, with its canonical IP), which is how the lines of a block that lost
// one of its markers are recognised: a foreign "0.0.0.0 ads.example", "fe80::1%eth0 router" or
// "10.0.0.1 10.0.0.2" never is.
func isEntryLine(text string) bool {
	ip, domain, ok := strings.Cut(text, " ")
	if !ok {
		return false
	}
	addr, reason := validateEntry(domain, ip)
	return reason == "" && addr.String() == ip
}

// RenderBlock returns the managed block for entries with the given line terminator, every line
// terminated; it returns nothing for no entries, so that an empty list leaves no trace.
func RenderBlock(entries []Entry, eol string) string {
	if len(entries) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(BeginMarker + eol)
	for _, e := range entries {
		b.WriteString(e.IP + " " + e.Domain + eol)
	}
	b.WriteString(EndMarker + eol)
	return b.String()
}

// Merge returns content with every managed block (complete, duplicated or half deleted) replaced
// by one block listing entries, or with none when entries is empty. Every other byte is kept:
// the block takes the place of the first old one, else goes at the end; it uses the file's line
// terminator; and a file that did not end with a newline still does not, so that Cleanup of
// Merge gives back the original file exactly.
func Merge(content []byte, entries []Entry) MergeResult {
	lines := splitLines(content)
	removed, stale := findBlocks(lines)

	eol := detectEOL(lines, removed, false)
	if eol == "" {
		eol = detectEOL(lines, removed, true)
	}
	if eol == "" {
		eol = "\n"
		// A file whose one line ends in a bare CR and no newline: the block after it ends that
		// line with CRLF (see below), which is the file's line ending on the next pass.
		if n := len(lines); n == 1 && !removed[0] && strings.HasSuffix(lines[0].text, "\r") {
			eol = "\r\n"
		}
	}

	// Keep the foreign lines; insert at the first removed line's position.
	kept := make([]line, 0, len(lines))
	insertAt := -1
	for i, l := range lines {
		if removed[i] {
			if insertAt < 0 {
				insertAt = len(kept)
			}
			continue
		}
		kept = append(kept, l)
	}
	if insertAt < 0 {
		insertAt = len(kept)
	}
	// A removed block that ended the file without a newline took the file's missing trailing
	// newline with it: the foreign line before it ends the file again, as it did originally.
	strippedTerm := ""
	if n := len(lines); n > 0 && removed[n-1] && lines[n-1].term == "" && len(kept) > 0 {
		strippedTerm = kept[len(kept)-1].term
		kept[len(kept)-1].term = ""
	}

	block := RenderBlock(entries, eol)
	var out bytes.Buffer
	out.Grow(len(content) + len(block))
	for i, l := range kept {
		if i == insertAt {
			out.WriteString(block)
		}
		out.WriteString(l.text)
		out.WriteString(l.term)
	}
	if insertAt == len(kept) && block != "" {
		if n := len(kept); n > 0 && kept[n-1].term == "" {
			// The file has no trailing newline: end its last line, and leave the block's last
			// line unterminated instead.
			term := strippedTerm
			if term == "" {
				term = eol
				// A bare CR ending the line stays part of its text: a LF alone would turn it
				// into a CRLF terminator, which Cleanup would then take away with the block.
				if strings.HasSuffix(kept[n-1].text, "\r") {
					term = "\r\n"
				}
			}
			out.WriteString(term)
			block = strings.TrimSuffix(block, eol)
		}
		out.WriteString(block)
	}
	return MergeResult{Content: out.Bytes(), Outside: domainsOutside(kept, entries), StaleMarkers: stale}
}

// Cleanup returns content without the managed block and nothing else changed.
func Cleanup(content []byte) []byte {
	return Merge(content, nil).Content
}

// countEntries counts the entry lines of the managed blocks in content.
func countEntries(content []byte) int {
	lines := splitLines(content)
	removed, _ := findBlocks(lines)
	n := 0
	for i, l := range lines {
		if removed[i] && !isMarker(l.text, BeginMarker) && !isMarker(l.text, EndMarker) {
			n++
		}
	}
	return n
}

// findBlocks marks the lines that belong to managed blocks. A BEGIN..END pair is a block. A BEGIN
// without its END takes the lines after it that have the agent's entry shape; an END without its
// BEGIN takes the lines before it likewise: so a half-deleted block goes away without eating a
// foreign line. It returns how many markers were unpaired.
func findBlocks(lines []line) (removed []bool, stale int) {
	removed = make([]bool, len(lines))
	floor := 0 // lines before floor are settled
	for i := 0; i < len(lines); {
		switch {
		case isMarker(lines[i].text, BeginMarker):
			j := i + 1
			for j < len(lines) && !isMarker(lines[j].text, BeginMarker) && !isMarker(lines[j].text, EndMarker) {
				j++
			}
			if j < len(lines) && isMarker(lines[j].text, EndMarker) {
				for k := i; k <= j; k++ {
					removed[k] = true
				}
				i = j + 1
			} else {
				stale++
				removed[i] = true
				k := i + 1
				for k < j && isEntryLine(lines[k].text) {
					removed[k] = true
					k++
				}
				i = k
			}
			floor = i
		case isMarker(lines[i].text, EndMarker):
			stale++
			removed[i] = true
			for k := i - 1; k >= floor && isEntryLine(lines[k].text); k-- {
				removed[k] = true
			}
			i++
			floor = i
		default:
			i++
		}
	}
	return removed, stale
}

// detectEOL returns the terminator of the first terminated line among the foreign lines (or,
// with inBlock, among the removed ones), or "" when there is none.
func detectEOL(lines []line, removed []bool, inBlock bool) string {
	for i, l := range lines {
		if removed[i] == inBlock && l.term != "" {
			return l.term
		}
	}
	return ""
}

// domainsOutside returns the managed domains that a foreign line also maps.
func domainsOutside(kept []line, entries []Entry) []string {
	if len(entries) == 0 {
		return nil
	}
	managed := make(map[string]bool, len(entries))
	for _, e := range entries {
		managed[e.Domain] = true
	}
	var found []string
	for _, l := range kept {
		text, _, _ := strings.Cut(l.text, "#")
		fields := strings.Fields(text)
		if len(fields) < 2 {
			continue
		}
		if _, err := netip.ParseAddr(fields[0]); err != nil {
			continue
		}
		for _, name := range fields[1:] {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if managed[name] && !slices.Contains(found, name) {
				found = append(found, name)
			}
		}
	}
	slices.Sort(found)
	return found
}
