package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// process is a child binary run as in production: a separate OS process with its own flags,
// started through internal/testenv, so that it dies with the benchmark.
type process struct {
	*testenv.Process
	name string
	log  string
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProcess starts bin with args and env added to the benchmark's environment, its output
// going to a log file in dir, and waits until health answers /readyz with 200.
func startProcess(ctx context.Context, name, bin, dir, health string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	tp, err := testenv.Command{Path: bin, Args: args, Env: env, Output: f, StopGrace: 15 * time.Second}.Start()
	if err != nil {
		f.Close()
		return nil, err
	}
	go func() { <-tp.Done(); f.Close() }()
	p := &process{Process: tp, name: name, log: logPath}
	c := http.Client{Timeout: time.Second}
	deadline := time.After(2 * time.Minute)
	for {
		resp, err := c.Get("http://" + health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("%s exited before it was ready (%w): see %s", name, p.Err(), logPath)
		case <-deadline:
			p.Stop()
			return nil, fmt.Errorf("%s was not ready on %s within 2m: see %s", name, health, logPath)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// alive returns an error when the process has exited.
func (p *process) alive() error {
	if p.Exited() {
		return fmt.Errorf("%s exited (%w): see %s", p.name, p.Err(), p.log)
	}
	return nil
}
