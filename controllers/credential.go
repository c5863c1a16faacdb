package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
)

// The credential check (docs/design.md, "Credential check"): the full pass hands the credential
// of an ImagePullSecret to checkCredential, which starts a probe (package credcheck) when the
// credential changed or the last check is older than CredentialCheckInterval, and returns at
// once. The probe runs on its own goroutine, at most credentialProbes at a time, and when it ends
// asks for a status pass; that pass adds the result to the status it writes anyway
// (credentialStatus). Distribution never waits for a probe, and the full pass stays the only
// status writer.

// Defaults of the credential options.
const (
	DefaultCredentialCheckInterval = time.Hour
	DefaultCredentialExpiryWarning = 7 * 24 * time.Hour
	// credentialProbes bounds the probes running at once: a probe is a few HTTPS requests that
	// mostly wait on the network.
	credentialProbes = 4
)

// credential is what a probe sends to the registry. expiry, when set, is the expiry its source
// knows (a minted token's); otherwise that of a password that is a JWT is read from it.
type credential struct {
	server, username, password string
	expiry                     time.Time
}

// credentials holds the state of the credential check of every ImagePullSecret.
type credentials struct {
	interval, warning time.Duration
	timeout           time.Duration
	now               func() time.Time
	caFile            string
	// done is called with the name of an ImagePullSecret whose probe ended.
	done func(name string)
	sem  chan struct{}

	mu      sync.Mutex
	byOwner map[types.UID]*credState
	ca      caBundle
}

// credState is the check of one ImagePullSecret.
type credState struct {
	key       [32]byte // digest of the credential and the trusted CAs now distributed
	expiry    time.Time
	hasExpiry bool
	// renewed: the expiry is that of a minted token, which its source renews before it comes;
	// no CredentialExpiring warning for it.
	renewed bool
	running bool
	// ended is closed when the running probe ends.
	ended chan struct{}
	// The last probe's result, the key it was made for and when it ended. After a change of
	// the credential the previous result stays in the status until the new one arrives.
	result    *credcheck.Result
	resultKey [32]byte
	checkedAt time.Time
}

// caBundle is the --registry-ca-file as last read: it is read again when its modification time
// or size change, so that a CA rotated in a mounted ConfigMap takes effect without a restart.
type caBundle struct {
	modTime time.Time
	size    int64
	pool    *x509.CertPool // nil: the system's CAs
	digest  [32]byte
	err     string // the last error reading it, logged once
}

func newCredentials(opts Options, done func(string)) *credentials {
	return &credentials{
		interval: opts.CredentialCheckInterval, warning: opts.CredentialExpiryWarning,
		timeout: credcheck.DefaultTimeout, now: opts.Now, caFile: opts.RegistryCAFile,
		done: done, sem: make(chan struct{}, credentialProbes), byOwner: map[types.UID]*credState{},
	}
}

// cas returns the CAs to trust and their digest, reading the CA file again when it changed. A
// file that cannot be read or holds no certificate leaves the last good CAs in use, with one
// error logged per change of the problem.
func (c *credentials) cas(ctx context.Context) (*x509.CertPool, [32]byte) {
	if c.caFile == "" {
		return nil, [32]byte{}
	}
	fi, err := os.Stat(c.caFile)
	if err == nil && fi.ModTime().Equal(c.ca.modTime) && fi.Size() == c.ca.size {
		return c.ca.pool, c.ca.digest
	}
	var data []byte
	var pool *x509.CertPool
	if err == nil {
		if data, err = os.ReadFile(c.caFile); err == nil {
			pool, err = credcheck.ParseCAs(c.caFile, data)
		}
	}
	if err != nil {
		if err.Error() != c.ca.err {
			ctrl.LoggerFrom(ctx).Error(err, "Failed to read the registry CA file; the CAs read before stay in use", "file", c.caFile)
			c.ca.err = err.Error()
		}
		return c.ca.pool, c.ca.digest
	}
	c.ca = caBundle{modTime: fi.ModTime(), size: fi.Size(), pool: pool, digest: sha256.Sum256(data)}
	return pool, c.ca.digest
}

// check starts a probe of cred for the ImagePullSecret (uid, name) when none is running and the
// credential changed or the last check is older than the interval. It never waits for the probe.
// A token past its expiry is not probed: it is Rejected without asking the registry.
func (c *credentials) check(ctx context.Context, uid types.UID, name string, cred credential) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pool, caDigest := c.cas(ctx)
	var buf bytes.Buffer
	for _, s := range []string{cred.server, cred.username, cred.password} {
		buf.WriteString(s)
		buf.WriteByte(0)
	}
	buf.Write(caDigest[:])
	key := sha256.Sum256(buf.Bytes())
	s := c.byOwner[uid]
	if s == nil {
		s = &credState{}
		c.byOwner[uid] = s
	}
	if s.key != key {
		s.key = key
		s.expiry, s.hasExpiry = credcheck.JWTExpiry(cred.password)
		s.renewed = !cred.expiry.IsZero()
		if s.renewed {
			s.expiry, s.hasExpiry = cred.expiry, true
		}
	}
	now := c.now()
	if s.running || s.hasExpiry && !now.Before(s.expiry) ||
		s.result != nil && s.resultKey == key && now.Sub(s.checkedAt) < c.interval {
		return
	}
	s.running = true
	ended := make(chan struct{})
	s.ended = ended
	p := &credcheck.Prober{RootCAs: pool, Timeout: c.timeout, Now: c.now}
	// The probe outlives this pass; its own timeout bounds it.
	ctx = context.WithoutCancel(ctx)
	go func() {
		c.sem <- struct{}{}
		res := p.Probe(ctx, cred.server, cred.username, cred.password)
		<-c.sem
		c.mu.Lock()
		s.running = false
		changed := s.result == nil || s.result.Outcome != res.Outcome || s.result.Message != res.Message
		s.result, s.resultKey, s.checkedAt = &res, key, c.now()
		live := c.byOwner[uid] == s
		close(ended)
		c.mu.Unlock()
		if !live {
			return // the ImagePullSecret is gone
		}
		if changed {
			// The message names the server and the HTTP status, never the credential or a token.
			ctrl.LoggerFrom(ctx).Info("Checked the registry credential", "result", res.Outcome, "message", res.Message)
		}
		c.done(name)
	}()
}

// last returns the result of the last probe of the credential last passed to check, or nil.
func (c *credentials) last(uid types.UID) *credcheck.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.byOwner[uid]; s != nil && s.result != nil && s.resultKey == s.key {
		res := *s.result
		return &res
	}
	return nil
}

// verify is check, then waiting up to timeout for the probe of cred to end. It returns its
// result, or nil when none came in time. A token past its expiry is Rejected at once.
func (c *credentials) verify(ctx context.Context, uid types.UID, name string, cred credential, timeout time.Duration) *credcheck.Result {
	c.check(ctx, uid, name, cred)
	c.mu.Lock()
	s := c.byOwner[uid]
	if s.hasExpiry && !c.now().Before(s.expiry) {
		c.mu.Unlock()
		return &credcheck.Result{Outcome: credcheck.Rejected, Message: "the password is a token that expired at " + s.expiry.UTC().Format(time.RFC3339)}
	}
	ended, running := s.ended, s.running
	c.mu.Unlock()
	if running {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-ended:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return c.last(uid)
}

// next returns when the full pass of uid should run again for the check: the next periodic
// probe, or the moment the token enters the warning period or expires, whichever comes first.
func (c *credentials) next(uid types.UID) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.byOwner[uid]
	now, d := c.now(), c.interval
	if s == nil {
		return d
	}
	// While a probe runs, its end asks for a pass; a token past its expiry is not probed again.
	if due := s.checkedAt.Add(c.interval).Sub(now); s.result != nil && !s.running && due > 0 {
		d = due
	}
	if s.hasExpiry {
		for _, at := range []time.Time{s.expiry.Add(-c.warning), s.expiry} {
			if until := at.Sub(now); until > 0 && until < d {
				d = until
			}
		}
	}
	return max(d, time.Second)
}

// forget drops the state of a deleted ImagePullSecret; a probe still running drops its result.
func (c *credentials) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byOwner, uid)
}

// status sets the credential's conditions and expiry in st from the last probe and the clock,
// and sends a Warning Event when CredentialVerified turns Rejected or CredentialExpiring turns
// ExpiresSoon (cur, the status the API server holds, tells whether it is a turn: one Event per
// change, not one per pass). Before the first probe of an ImagePullSecret ends there is no
// CredentialVerified condition.
func (r *Reconciler) credentialStatus(ips *tcrv1.ImagePullSecret, cur, st *tcrv1.ImagePullSecretStatus) {
	c := r.creds
	c.mu.Lock()
	s := c.byOwner[ips.UID]
	var (
		res                        *credcheck.Result
		expiry                     time.Time
		hasExpiry, exists, renewed bool
	)
	if s != nil {
		exists, res, expiry, hasExpiry, renewed = true, s.result, s.expiry, s.hasExpiry, s.renewed
	}
	now := c.now()
	c.mu.Unlock()
	if !exists {
		return
	}
	expired := hasExpiry && !now.Before(expiry)
	at := expiry.UTC().Format(time.RFC3339)
	expiredMsg := "the password is a token that expired at " + at
	if expired {
		res = &credcheck.Result{Outcome: credcheck.Rejected, Message: expiredMsg}
	}
	if res != nil {
		status, reason := metav1.ConditionUnknown, string(res.Outcome)
		switch res.Outcome {
		case credcheck.Accepted:
			status = metav1.ConditionTrue
		case credcheck.Rejected:
			status = metav1.ConditionFalse
		}
		setCondition(st, ips.Generation, tcrv1.ConditionCredentialVerified, status, reason, res.Message)
		if status == metav1.ConditionFalse && !conditionIs(cur, tcrv1.ConditionCredentialVerified, status, reason, res.Message) {
			r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, tcrv1.ReasonRejected, "CheckCredential", "%s", res.Message)
		}
	}
	if !hasExpiry {
		st.CredentialExpiresAt = nil
		meta.RemoveStatusCondition(&st.Conditions, tcrv1.ConditionCredentialExpiring)
		return
	}
	// The API server keeps times to the second; a finer one would never compare equal.
	st.CredentialExpiresAt = &metav1.Time{Time: expiry.Truncate(time.Second)}
	if renewed {
		// A minted token is renewed before it expires; CredentialMinted reports when it is not.
		meta.RemoveStatusCondition(&st.Conditions, tcrv1.ConditionCredentialExpiring)
		return
	}
	switch {
	case expired:
		setCondition(st, ips.Generation, tcrv1.ConditionCredentialExpiring, metav1.ConditionTrue, tcrv1.ReasonExpired, expiredMsg)
	case expiry.Sub(now) < c.warning:
		msg := fmt.Sprintf("the password is a token that expires at %s, in less than %s (--credential-expiry-warning)", at, c.warning)
		if !conditionIs(cur, tcrv1.ConditionCredentialExpiring, metav1.ConditionTrue, tcrv1.ReasonExpiresSoon, msg) {
			r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, tcrv1.ReasonExpiresSoon, "CheckCredential", "%s", msg)
		}
		setCondition(st, ips.Generation, tcrv1.ConditionCredentialExpiring, metav1.ConditionTrue, tcrv1.ReasonExpiresSoon, msg)
	default:
		setCondition(st, ips.Generation, tcrv1.ConditionCredentialExpiring, metav1.ConditionFalse, tcrv1.ReasonExpiresLater,
			"the password is a token that expires at "+at)
	}
}

func conditionIs(st *tcrv1.ImagePullSecretStatus, typ string, status metav1.ConditionStatus, reason, message string) bool {
	c := meta.FindStatusCondition(st.Conditions, typ)
	return c != nil && c.Status == status && c.Reason == reason && c.Message == message
}
