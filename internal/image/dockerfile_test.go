package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The Dockerfile and 'make image' build one image two ways; these tests hold them to each other.
// A change to the Dockerfile's final stage or to its go build fails them until this package
// follows.

// dockerfile is what the tests read of a Dockerfile: its final stage and the go build of the
// stage its COPY takes from.
type dockerfile struct {
	base       string   // FROM of the final stage
	copies     []string // image paths the final stage's COPY --from=build instructions write
	user       string
	entrypoint []string
	goBuild    string // the RUN of the build stage that runs go build, with its environment
	unknown    []string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and blank lines are dropped,
// continued lines joined.
func parseDockerfile(text string) (dockerfile, error) {
	var instrs []string
	var cur strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instrs = append(instrs, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	var d dockerfile
	stage := ""
	goBuilds := map[string]string{}
	for _, in := range instrs {
		kw, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(kw) {
		case "FROM":
			f := strings.Fields(rest)
			stage = ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stage = f[2]
			}
			d = dockerfile{base: f[0]}
		case "RUN":
			if strings.Contains(rest, "go build") {
				goBuilds[stage] = rest
			}
		case "COPY":
			f := strings.Fields(rest)
			if len(f) < 3 || f[0] != "--from=build" || f[len(f)-1] != "/" {
				d.unknown = append(d.unknown, "COPY "+rest)
				continue
			}
			for _, src := range f[1 : len(f)-1] {
				d.copies = append(d.copies, "/"+path.Base(src))
			}
			d.goBuild = goBuilds["build"]
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				return d, fmt.Errorf("ENTRYPOINT %s: only the exec form is understood: %w", rest, err)
			}
		}
	}
	if len(d.unknown) != 0 {
		return d, fmt.Errorf("the final stage's %q: only COPY --from=build SRC... / is understood", d.unknown)
	}
	return d, nil
}

// imageFiles lists the entries of each layer of img, with their mode and owner.
func imageFiles(t *testing.T, img v1.Image) [][]string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, fmt.Sprintf("%s %c %04o %d:%d", "/"+strings.TrimSuffix(h.Name, "/"), h.Typeflag, h.Mode, h.Uid, h.Gid))
		}
		rc.Close()
		out = append(out, files)
	}
	return out
}

// checkDockerfile returns every way img and the go build of BuildCommand differ from d.
func checkDockerfile(t *testing.T, d dockerfile, img v1.Image) []string {
	t.Helper()
	var diffs []string
	if d.base != "gcr.io/distroless/static:nonroot" {
		diffs = append(diffs, fmt.Sprintf("the Dockerfile's base is %s; the image's base layer is made like gcr.io/distroless/static:nonroot", d.base))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != d.user {
		diffs = append(diffs, fmt.Sprintf("user: Dockerfile %q, image %q", d.user, cf.Config.User))
	}
	if !slices.Equal(cf.Config.Entrypoint, d.entrypoint) {
		diffs = append(diffs, fmt.Sprintf("entrypoint: Dockerfile %q, image %q", d.entrypoint, cf.Config.Entrypoint))
	}
	layers := imageFiles(t, img)
	var copied []string
	for _, f := range layers[len(layers)-1] {
		copied = append(copied, strings.Fields(f)[0])
		if !strings.HasSuffix(f, " 0 0755 0:0") {
			diffs = append(diffs, fmt.Sprintf("%s: a COPY --from=build writes an executable file 0755 of root, the image has %s", strings.Fields(f)[0], f))
		}
	}
	if !slices.Equal(sorted(copied), sorted(d.copies)) {
		diffs = append(diffs, fmt.Sprintf("files: the Dockerfile copies %q, the image's last layer holds %q", d.copies, copied))
	}
	// The go build as the Dockerfile writes it: into /out/, for ${TARGETOS}/${TARGETARCH}.
	cmd := BuildCommand(context.Background(), "go", "/out", "arm64")
	env := map[string]string{}
	for _, kv := range cmd.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v // the last value of a name is the one the command gets
	}
	if env["GOOS"] != "linux" || env["GOARCH"] != "arm64" {
		diffs = append(diffs, fmt.Sprintf("go build: GOOS=%s GOARCH=%s, want linux and the architecture asked for (arm64)", env["GOOS"], env["GOARCH"]))
	}
	want := "CGO_ENABLED=" + env["CGO_ENABLED"] + " GOOS=${TARGETOS} GOARCH=${TARGETARCH}"
	for _, a := range cmd.Args {
		if flag, value, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") && strings.Contains(value, " ") {
			a = flag + `="` + value + `"`
		}
		want += " " + a
	}
	if d.goBuild != want {
		diffs = append(diffs, fmt.Sprintf("go build: the Dockerfile runs %q, the image builder %q", d.goBuild, want))
	}
	return diffs
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestImageIsTheDockerfiles builds the image from stand-in binaries and compares it with the
// repository's Dockerfile: user, entrypoint, the files its COPY writes, its base, its go build.
func TestImageIsTheDockerfiles(t *testing.T) {
	text, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDockerfile(string(text))
	if err != nil {
		t.Fatal(err)
	}
	img := buildStandIn(t, standInOptions(t))
	if diffs := checkDockerfile(t, d, img); len(diffs) != 0 {
		t.Errorf("the image differs from the Dockerfile:\n%s", strings.Join(diffs, "\n"))
	}
	// The parse found what the comparison rests on, so that an empty parse cannot pass.
	if want := []string{"/manager", "/hosts-updater", "/kubectl-ips", "/tcr-credential-provider"}; !slices.Equal(d.copies, want) {
		t.Errorf("parsed COPY %q, want %q", d.copies, want)
	}
	if d.user != "65532:65532" || !slices.Equal(d.entrypoint, []string{"/manager"}) {
		t.Errorf("parsed USER %q ENTRYPOINT %q", d.user, d.entrypoint)
	}
}

// TestDockerfileChangesAreCaught changes the Dockerfile the way a contributor might, without
// touching the image builder, and checks that each change is reported.
func TestDockerfileChangesAreCaught(t *testing.T) {
	text, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	img := buildStandIn(t, standInOptions(t))
	for _, tc := range []struct{ old, new, diff string }{
		{"USER 65532:65532", "USER 65532",
			`user: Dockerfile "65532", image "65532:65532"`},
		{`ENTRYPOINT ["/manager"]`, `ENTRYPOINT ["/manager", "--leader-elect"]`,
			`entrypoint: Dockerfile ["/manager" "--leader-elect"], image ["/manager"]`},
		{"COPY --from=build /out/manager /out/hosts-updater /out/kubectl-ips /out/tcr-credential-provider /",
			"COPY --from=build /out/manager /out/hosts-updater /out/kubectl-ips /out/tcr-credential-provider /out/tcr-debug /",
			`files: the Dockerfile copies ["/manager" "/hosts-updater" "/kubectl-ips" "/tcr-credential-provider" "/tcr-debug"], the image's last layer holds ["/hosts-updater" "/kubectl-ips" "/manager" "/tcr-credential-provider"]`},
		{"FROM gcr.io/distroless/static:nonroot", "FROM gcr.io/distroless/static:latest",
			"the Dockerfile's base is gcr.io/distroless/static:latest; the image's base layer is made like gcr.io/distroless/static:nonroot"},
		{`-ldflags="-s -w"`, `-ldflags="-s -w -X main.version=dev"`,
			`go build: the Dockerfile runs "CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags=\"-s -w -X main.version=dev\" -o /out/ ./cmd/manager ./cmd/hosts-updater ./cmd/kubectl-ips ./cmd/tcr-credential-provider", ` +
				`the image builder "CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags=\"-s -w\" -o /out/ ./cmd/manager ./cmd/hosts-updater ./cmd/kubectl-ips ./cmd/tcr-credential-provider"`},
		{"CGO_ENABLED=0 GOOS", "CGO_ENABLED=1 GOOS",
			`go build: the Dockerfile runs "CGO_ENABLED=1 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags=\"-s -w\" -o /out/ ./cmd/manager ./cmd/hosts-updater ./cmd/kubectl-ips ./cmd/tcr-credential-provider", ` +
				`the image builder "CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags=\"-s -w\" -o /out/ ./cmd/manager ./cmd/hosts-updater ./cmd/kubectl-ips ./cmd/tcr-credential-provider"`},
	} {
		changed := strings.Replace(string(text), tc.old, tc.new, 1)
		if changed == string(text) {
			t.Fatalf("the Dockerfile has no %q to change", tc.old)
		}
		d, err := parseDockerfile(changed)
		if err != nil {
			t.Fatal(err)
		}
		if diffs := checkDockerfile(t, d, img); !slices.Equal(diffs, []string{tc.diff}) {
			t.Errorf("after %q -> %q:\ngot  %q\nwant %q", tc.old, tc.new, diffs, []string{tc.diff})
		}
	}
}
