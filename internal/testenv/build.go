package testenv

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Build builds the commands pkgs of the working tree (such as "./cmd/manager") into a temporary
// directory of the test and returns the path of each binary by its name ("manager"), so that a
// test never runs a stale bin/.
func Build(t testing.TB, pkgs ...string) map[string]string {
	t.Helper()
	bins, err := BuildInto(t.TempDir(), pkgs...)
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// BuildInto is Build into dir, for binaries that outlive one test.
func BuildInto(dir string, pkgs ...string) (map[string]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = Command{
		Path: "go", Args: append([]string{"build", "-trimpath", "-o", dir + "/"}, pkgs...),
		Dir: root, Output: &out,
	}.Run(context.Background())
	if err != nil {
		return nil, fmt.Errorf("go build %s: %w: %s", strings.Join(pkgs, " "), err, out.String())
	}
	bins := map[string]string{}
	for _, p := range pkgs {
		bins[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
	}
	return bins, nil
}
