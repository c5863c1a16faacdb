package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Print writes one `bench: name=value unit` line per figure, the skipped lines, and the
// summary table of targets.
func (r *Result) Print(w io.Writer) {
	for _, f := range r.Figures {
		fmt.Fprintln(w, f)
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "bench: "+s)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tTARGET\tRESULT")
	for _, c := range r.Checks {
		verdict := "pass"
		if !c.Pass {
			verdict = "MISS"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", c.Figure, formatUnit(c.Value, c.Unit), c.Unit, c.Target, verdict)
	}
	_ = tw.Flush()
}

// parseGoBench turns `go test -bench -benchmem` output into figures named engine.<benchmark>.
func parseGoBench(out []byte) []Figure {
	var figs []Figure
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := "engine." + strings.TrimPrefix(f[0], "Benchmark")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			suffix := map[string]string{"ns/op": "", "B/op": ".bytes", "allocs/op": ".allocs"}[unit]
			if _, known := map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true}[unit]; !known {
				suffix = "." + strings.ReplaceAll(unit, "/", "_per_")
			}
			figs = append(figs, Figure{Name: name + suffix, Value: v, Unit: unit})
		}
	}
	return figs
}

// EngineBenchmarks runs the rule engine's Go benchmarks in root and returns their figures.
func EngineBenchmarks(ctx context.Context, goBin, root string) ([]Figure, error) {
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", ".", "-benchmem", "./engine/")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running the engine benchmarks: %w: %s", err, out)
	}
	return parseGoBench(out), nil
}
