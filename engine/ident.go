package engine

import "strings"

// CEL reserves the word "namespace": the parser refuses it as a variable name (it stays legal as
// a field name, as in serviceAccount.namespace). The issue and the API documentation promise
// expressions over `namespace`, so before parsing, every identifier `namespace` that is not a
// field selection, a string literal or a comment is renamed to hiddenNamespace, which has the
// same length so that columns in CEL error messages still point at the user's text; messages are
// mapped back with unhideNamespace.
const hiddenNamespace = "__nmspc__"

// hideNamespace renames the variable `namespace` in src to hiddenNamespace.
func hideNamespace(src string) string {
	if !strings.Contains(src, varNamespace) {
		return src
	}
	var b strings.Builder
	b.Grow(len(src))
	prevSignificant := byte(0) // last byte outside spaces and comments
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				end = len(src) - i
			}
			b.WriteString(src[i : i+end])
			i += end
			continue
		case c == '"' || c == '\'' || c == '`':
			raw := c != '`' && rawPrefix(src[:i])
			end := stringEnd(src, i, raw)
			b.WriteString(src[i:end])
			i = end
			prevSignificant = c
			continue
		case identStart(c):
			j := i + 1
			for j < len(src) && identByte(src[j]) {
				j++
			}
			word := src[i:j]
			if word == varNamespace && prevSignificant != '.' {
				word = hiddenNamespace
			}
			b.WriteString(word)
			i = j
			prevSignificant = 'a'
			continue
		}
		b.WriteByte(c)
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			prevSignificant = c
		}
		i++
	}
	return b.String()
}

// unhideNamespace maps hiddenNamespace back to `namespace` in a message for the user.
func unhideNamespace(msg string) string {
	return strings.ReplaceAll(msg, hiddenNamespace, varNamespace)
}

// stringEnd returns the index just past the string literal (or backtick-quoted identifier)
// starting at src[i]; an unterminated literal runs to the end (the parser then reports it).
func stringEnd(src string, i int, raw bool) int {
	q := src[i]
	if q != '`' && strings.HasPrefix(src[i:], strings.Repeat(string(q), 3)) {
		delim := strings.Repeat(string(q), 3)
		for j := i + 3; j < len(src); j++ {
			if !raw && src[j] == '\\' {
				j++
				continue
			}
			if strings.HasPrefix(src[j:], delim) {
				return j + 3
			}
		}
		return len(src)
	}
	for j := i + 1; j < len(src); j++ {
		if !raw && q != '`' && src[j] == '\\' {
			j++
			continue
		}
		if src[j] == q || (src[j] == '\n' && q != '`') {
			return j + 1
		}
	}
	return len(src)
}

// rawPrefix reports whether the word that ends before reaches a quote makes the string literal
// raw: CEL's prefixes are r, b and both in either order, in either case, so br"\" is raw (its
// backslash escapes nothing) while b"\\" is not.
func rawPrefix(before string) bool {
	j := len(before)
	for j > 0 && identByte(before[j-1]) {
		j--
	}
	switch strings.ToLower(before[j:]) {
	case "r", "rb", "br":
		return true
	}
	return false
}

func identStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func identByte(c byte) bool { return identStart(c) || ('0' <= c && c <= '9') }
