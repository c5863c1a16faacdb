package engine

import "strings"

// All is the list value that selects every name, as in the original product.
const All = "*"

// ParseList reads a comma list the way the original product does: "*" or "" (after trimming)
// selects every name (all is true); otherwise each comma-separated entry, trimmed of surrounding
// spaces, is an exact name. Empty entries are dropped: no object has an empty name, so they could
// never match. Admission (Validate) is stricter and refuses them.
func ParseList(list string) (all bool, names []string) {
	list = strings.TrimSpace(list)
	if list == "" || list == All {
		return true, nil
	}
	for entry := range strings.SplitSeq(list, ",") {
		if entry = strings.TrimSpace(entry); entry != "" {
			names = append(names, entry)
		}
	}
	return false, names
}

// smallSetSize is the list length up to which a linear scan beats a map lookup for names.
const smallSetSize = 8

// nameSet answers "is this name listed?" without allocating.
type nameSet struct {
	names []string
	set   map[string]struct{}
}

func newNameSet(names []string) nameSet {
	s := nameSet{names: names}
	if len(names) > smallSetSize {
		s.set = make(map[string]struct{}, len(names))
		for _, n := range names {
			s.set[n] = struct{}{}
		}
	}
	return s
}

func (s *nameSet) has(name string) bool {
	if s.set != nil {
		_, ok := s.set[name]
		return ok
	}
	for _, n := range s.names {
		if n == name {
			return true
		}
	}
	return false
}
