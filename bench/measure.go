package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Writes counts API writes by "resource[/subresource] verb", with conflicts (HTTP 409) apart,
// as read from the audit log.
type Writes struct {
	ByKind    map[string]int
	Total     int
	Conflicts int
	Errors    int
	// Received holds when the API server received each write, in log order, so a phase can
	// tell the wait before its first write from the time spent writing.
	Received []time.Time
}

// Sub returns w minus before, for the writes of one phase.
func (w Writes) Sub(before Writes) Writes {
	out := Writes{ByKind: map[string]int{}, Total: w.Total - before.Total,
		Conflicts: w.Conflicts - before.Conflicts, Errors: w.Errors - before.Errors}
	if len(w.Received) > len(before.Received) {
		out.Received = w.Received[len(before.Received):]
	}
	for k, v := range w.ByKind {
		if d := v - before.ByKind[k]; d != 0 {
			out.ByKind[k] = d
		}
	}
	return out
}

// Span returns when the first write of w was received and when the last one was.
func (w Writes) Span() (first, last time.Time) {
	for _, t := range w.Received {
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return first, last
}

// Count returns the writes of one "resource verb" key.
func (w Writes) Count(key string) int { return w.ByKind[key] }

type auditEvent struct {
	AuditID    string    `json:"auditID"`
	RequestURI string    `json:"requestURI"`
	Stage      string    `json:"stage"`
	Received   time.Time `json:"requestReceivedTimestamp"`
	Verb       string    `json:"verb"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// eachAuditEvent calls fn with each event of an audit log (one JSON event a line) until fn
// returns an error.
func eachAuditEvent(r io.Reader, fn func(ev *auditEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev auditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("parsing an audit event: %w", err)
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseAudit counts the completed writes of user in an audit log.
func parseAudit(r io.Reader, user string) (Writes, error) {
	w := Writes{ByKind: map[string]int{}}
	err := eachAuditEvent(r, func(ev *auditEvent) error {
		if ev.Stage != "ResponseComplete" || ev.User.Username != user || ev.ObjectRef == nil {
			return nil
		}
		switch ev.Verb {
		case "create", "update", "patch", "delete", "deletecollection":
		default:
			return nil
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		w.ByKind[res+" "+ev.Verb]++
		w.Total++
		w.Received = append(w.Received, ev.Received)
		if ev.ResponseStatus != nil {
			switch {
			case ev.ResponseStatus.Code == 409:
				w.Conflicts++
			case ev.ResponseStatus.Code >= 400:
				w.Errors++
			}
		}
		return nil
	})
	return w, err
}

// Read is one read request (get, list or watch) as the audit log records it.
type Read struct {
	Verb, URI string
	// FieldSelector is the request's fieldSelector parameter, "" when it has none.
	FieldSelector string
}

// parseAuditReads returns the reads of resource by user in an audit log, once per request (a
// watch is logged when its response starts and again when it ends), in log order.
func parseAuditReads(r io.Reader, user, resource string) ([]Read, error) {
	var out []Read
	seen := map[string]bool{}
	err := eachAuditEvent(r, func(ev *auditEvent) error {
		if ev.User.Username != user || ev.ObjectRef == nil || ev.ObjectRef.Resource != resource || ev.ObjectRef.Subresource != "" {
			return nil
		}
		switch ev.Verb {
		case "get", "list", "watch":
		default:
			return nil
		}
		if ev.AuditID != "" {
			if seen[ev.AuditID] {
				return nil
			}
			seen[ev.AuditID] = true
		}
		u, err := url.ParseRequestURI(ev.RequestURI)
		if err != nil {
			return fmt.Errorf("parsing the request URI of an audit event: %w", err)
		}
		out = append(out, Read{Verb: ev.Verb, URI: ev.RequestURI, FieldSelector: u.Query().Get("fieldSelector")})
		return nil
	})
	return out, err
}

func readAuditReads(path, user, resource string) ([]Read, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseAuditReads(f, user, resource)
}

func readAudit(path, user string) (Writes, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return Writes{ByKind: map[string]int{}}, nil
	}
	if err != nil {
		return Writes{}, err
	}
	defer f.Close()
	return parseAudit(f, user)
}

// Requests counts the requests a client-go process issued, by HTTP method, from its
// rest_client_requests_total metric.
type Requests map[string]float64

// parseRequests reads rest_client_requests_total{code,host,method} out of a Prometheus text
// exposition and sums it by method.
func parseRequests(r io.Reader) (Requests, error) {
	out := Requests{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			return nil, fmt.Errorf("malformed metric line %q", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.Fields(line[end+1:])[0]), 64)
		if err != nil {
			return nil, fmt.Errorf("malformed metric value in %q: %w", line, err)
		}
		method := ""
		for _, kv := range strings.Split(line[len("rest_client_requests_total{"):end], ",") {
			if k, val, ok := strings.Cut(kv, "="); ok && k == "method" {
				method = strings.Trim(val, `"`)
			}
		}
		out[method] += v
	}
	return out, sc.Err()
}

// Writes sums POST, PUT, PATCH and DELETE.
func (r Requests) Writes() float64 { return r["POST"] + r["PUT"] + r["PATCH"] + r["DELETE"] }

// Reads sums GET (which includes LIST and WATCH).
func (r Requests) Reads() float64 { return r["GET"] }

func scrapeRequests(addr string) (Requests, error) {
	body, err := scrape(addr)
	if err != nil {
		return nil, err
	}
	return parseRequests(bytes.NewReader(body))
}

// scrape returns the Prometheus text exposition served on addr.
func scrape(addr string) ([]byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping the metrics on %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the metrics on %s: status %s", addr, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// metricValue returns the sample of an unlabelled metric in a Prometheus text exposition.
func metricValue(text []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// Memory is a process's resident set, in bytes. Anon and File split RSS into memory the
// process allocated and pages of mapped files (mostly its own binary's text).
type Memory struct{ RSS, PeakRSS, Anon, File float64 }

// parseProcStatus reads VmRSS and VmHWM out of /proc/<pid>/status.
func parseProcStatus(r io.Reader) (Memory, error) {
	var m Memory
	var found int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		var dst *float64
		switch f[0] {
		case "VmRSS:":
			dst = &m.RSS
			found++
		case "VmHWM:":
			dst = &m.PeakRSS
			found++
		case "RssAnon:":
			dst = &m.Anon
		case "RssFile:":
			dst = &m.File
		default:
			continue
		}
		kib, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return m, fmt.Errorf("malformed %s line: %w", f[0], err)
		}
		*dst = kib * 1024
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS or VmHWM missing from the process status")
	}
	return m, nil
}

func processMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	return parseProcStatus(f)
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// parseProcStat returns the user plus system CPU time in a /proc/<pid>/stat line.
func parseProcStat(stat string) (time.Duration, error) {
	// The command name (field 2) may hold spaces and parentheses: count from its closing one.
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed process stat %q", stat)
	}
	f := strings.Fields(stat[end+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed process stat %q", stat)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed CPU time in process stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// processCPU returns the CPU time a process has used so far.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(data))
}
