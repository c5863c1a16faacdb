// Package agent is the hosts-updater: it parses the updater-config ConfigMap, renders the managed
// block of a hosts file, merges it into the file without touching any other byte, writes the file
// in place and keeps it in step with the ConfigMap.
package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ConfigMapName and ConfigKey name the agent's input: the original product's ConfigMap and key.
const (
	ConfigMapName = "updater-config"
	ConfigKey     = "hosts.yaml"
)

// Entry is one element of hosts.yaml, in the original product's format.
type Entry struct {
	Domain   string `json:"domain"`
	IP       string `json:"ip"`
	Disabled bool   `json:"disabled,omitempty"`
}

// InvalidEntry is an element of hosts.yaml that was skipped, with the reason, so that it can be
// reported without failing the whole document.
type InvalidEntry struct {
	// Index is the element's position in the list, from 0.
	Index  int
	Domain string
	IP     string
	Reason string
}

// Config is a parsed hosts.yaml.
type Config struct {
	// Entries are the valid, enabled entries in document order, each IP in canonical form, each
	// (domain, address family) pair at most once.
	Entries []Entry
	// Disabled counts the entries with disabled: true.
	Disabled int
	// Invalid lists the entries that were skipped.
	Invalid []InvalidEntry
}

// ParseConfig parses the hosts.yaml document of the ConfigMap. An empty or null document means
// no entries. An element that is not a valid entry is skipped and listed in Config.Invalid, so
// one typo does not undo every other entry; an error is returned only when the document as a
// whole is not a YAML list, in which case the caller keeps what it applied last.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return cfg, fmt.Errorf("parsing %s: %w", ConfigKey, err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(js, &items); err != nil {
		return cfg, fmt.Errorf("parsing %s: want a YAML list of {domain, ip, disabled}, got %s", ConfigKey, jsonKind(js))
	}
	type key struct {
		domain string
		is4    bool
	}
	seen := map[key]int{} // index into cfg.Entries
	for i, raw := range items {
		var e Entry
		if err := json.Unmarshal(raw, &e); err != nil {
			cfg.Invalid = append(cfg.Invalid, InvalidEntry{Index: i, Reason: "not a {domain, ip, disabled} object: " + jsonErrorReason(err)})
			continue
		}
		if e.Disabled {
			cfg.Disabled++
			continue
		}
		ip, reason := validateEntry(e.Domain, e.IP)
		if reason != "" {
			cfg.Invalid = append(cfg.Invalid, InvalidEntry{Index: i, Domain: e.Domain, IP: e.IP, Reason: reason})
			continue
		}
		k := key{domain: e.Domain, is4: ip.Is4()}
		if j, dup := seen[k]; dup {
			if cfg.Entries[j].IP == ip.String() {
				continue // the same line twice: harmless, written once
			}
			cfg.Invalid = append(cfg.Invalid, InvalidEntry{Index: i, Domain: e.Domain, IP: e.IP,
				Reason: fmt.Sprintf("domain %q already maps to %s in an earlier entry", e.Domain, cfg.Entries[j].IP)})
			continue
		}
		seen[k] = len(cfg.Entries)
		cfg.Entries = append(cfg.Entries, Entry{Domain: e.Domain, IP: ip.String()})
	}
	return cfg, nil
}

// jsonErrorReason shortens encoding/json's messages, which name Go types, to what a user wrote.
func jsonErrorReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "got a " + te.Value
		}
		return fmt.Sprintf("field %q: got a %s", te.Field, te.Value)
	}
	return err.Error()
}

// jsonKind names the kind of a JSON document in YAML's words.
func jsonKind(js []byte) string {
	switch b := bytes.TrimSpace(js); {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "a mapping"
	case b[0] == '"':
		return "a string"
	default:
		return "a scalar"
	}
}

// validateEntry checks a domain and an address and returns the parsed address, or a reason.
func validateEntry(domain, ip string) (netip.Addr, string) {
	if domain == "" {
		return netip.Addr{}, "domain is empty"
	}
	if msgs := validation.IsDNS1123Subdomain(domain); len(msgs) > 0 {
		return netip.Addr{}, fmt.Sprintf("domain %q is not a lowercase DNS-1123 subdomain: %s", domain, strings.Join(msgs, "; "))
	}
	if _, err := netip.ParseAddr(domain); err == nil {
		return netip.Addr{}, fmt.Sprintf("domain %q is an IP address", domain)
	}
	if ip == "" {
		return netip.Addr{}, "ip is empty"
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("ip %q is not an IPv4 or IPv6 address", ip)
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Sprintf("ip %q has an IPv6 zone, which hosts files do not support", ip)
	}
	if addr.IsUnspecified() {
		return netip.Addr{}, fmt.Sprintf("ip %q is the unspecified address", ip)
	}
	return addr, ""
}
