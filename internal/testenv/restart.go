package testenv

import "fmt"

// RestartAPIServer stops kube-apiserver and starts it again over the same etcd, on the same port
// and with the same serving certificate, so that clients reconnect on their own. The restarted
// server's watch cache begins at etcd's current revision: a client that resumes a watch from an
// older resourceVersion is told it is too old and must list again, which is what tests of watch
// gaps need.
func (e *Env) RestartAPIServer() error {
	apiServer := e.env.ControlPlane.GetAPIServer()
	if err := apiServer.Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	var err error
	onSpawnerThread(func() { err = apiServer.Start() })
	if err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return nil
}
