package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/credcheck"
	"github.com/tcr-assistant/tcr-assistant/tcrapi"
)

// The minted source (docs/design.md, "Credentials"): docker.instanceToken has the controller
// call the TCR API's CreateInstanceToken and distribute the token it returns. Only the full pass
// asks a source, and the queue never runs two full passes of one rule at once, so each refresh
// of a rule is one API call. The token is kept in one Secret of the own namespace
// (tcr-assistant-token-<rule UID>), so that a restart of the manager does not mint again, and is
// refreshed at a random point between 55% and 65% of its lifetime. A failed call leaves what is
// distributed as it is and is retried with backoff. A LongTerm token is the rule's: it is revoked
// when the rule goes or names another instance or type, and a LongTerm token marked as ours whose
// rule is gone is revoked when another rule mints on the same instance.

const (
	// tokenStatePrefix + rule UID names the Secret of the own namespace that keeps the token.
	tokenStatePrefix = "tcr-assistant-token-"
	tokenStateKey    = "state"
	// tokenMarker starts the Desc of every token the controller mints: tokenMarker<cluster>/<rule
	// UID>, where cluster is the UID of the controller's namespace, so that two clusters that
	// mint on one instance never take each other's tokens for orphans.
	tokenMarker = "tcr-assistant:"
	// refreshFrom and refreshSpread place the refresh at a random point between 55% and 65% of
	// the token's lifetime.
	refreshFrom, refreshSpread = 0.55, 0.10
)

// Backoff of a failed call: authorization errors, which a retry rarely cures, back off more
// slowly.
var (
	retryBackoff     = backoff{first: 5 * time.Second, max: 5 * time.Minute}
	authRetryBackoff = backoff{first: time.Minute, max: 30 * time.Minute}
)

type backoff struct{ first, max time.Duration }

func (b backoff) after(failures int) time.Duration {
	d := b.first
	for i := 1; i < failures && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// tokenRecord is what the state Secret keeps of a rule's token.
type tokenRecord struct {
	RegistryID string `json:"registryId"`
	Region     string `json:"region"`
	Type       string `json:"type"`
	// KeyDigest is the SHA-256 of the API key the token was minted with: a new key mints again.
	KeyDigest string `json:"keyDigest"`
	// APIKeySecret is the apiKeySecretRef it was minted with, to revoke it after the rule
	// stopped naming an instance.
	APIKeySecret string `json:"apiKeySecret,omitempty"`
	Username     string `json:"username"`
	Token        string `json:"token"`
	TokenID      string `json:"tokenId,omitempty"`
	// Unix seconds; ExpiresAt and RefreshAt are 0 for a token that does not expire.
	MintedAt  int64 `json:"mintedAt"`
	ExpiresAt int64 `json:"expiresAt,omitempty"`
	RefreshAt int64 `json:"refreshAt,omitempty"`
	// Revoke lists LongTerm tokens of this rule replaced by this one and not yet revoked.
	Revoke []revocation `json:"revoke,omitempty"`
}

// revocation is a LongTerm token to revoke.
type revocation struct {
	RegistryID string `json:"registryId"`
	Region     string `json:"region"`
	TokenID    string `json:"tokenId"`
}

// mintReport is the state of a minted credential, for the CredentialMinted condition.
type mintReport struct {
	ok              bool
	reason, message string
	tokenID         string // of a LongTerm token
}

// minter is the source of docker.instanceToken.
type minter struct {
	r *Reconciler
	// api returns a client of the TCR API for region with cred.
	api func(cred common.CredentialIface, region string) (tokenAPI, error)
	// identity is the manager's own cloud identity, for a rule without apiKeySecretRef.
	identity func() (common.CredentialIface, error)
	now      func() time.Time
	rand     func() float64

	mu      sync.Mutex
	byOwner map[types.UID]*mintState
}

// tokenAPI is what the minter calls of the TCR API (tcrapi.Client).
type tokenAPI interface {
	CreateInstanceToken(ctx context.Context, registryID string, longTerm bool, desc string) (tcrapi.Token, error)
	DeleteInstanceToken(ctx context.Context, registryID, tokenID string) error
	DescribeInstanceToken(ctx context.Context, registryID string) ([]tcrapi.TokenInfo, error)
}

// mintState is what the minter knows of one rule.
type mintState struct {
	loaded   bool
	rec      tokenRecord
	failures int
	retryAt  time.Time
	err      error // the last call's error; nil after a success
}

func newMinter(r *Reconciler, opts Options) *minter {
	m := &minter{r: r, now: opts.Now, rand: rand.Float64, identity: tcrapi.Identity, byOwner: map[types.UID]*mintState{}}
	endpoint, caFile := opts.TCRAPIEndpoint, opts.TCRAPICAFile
	m.api = func(cred common.CredentialIface, region string) (tokenAPI, error) {
		if cred == nil {
			// Asked only when a call is due: the metadata service may take seconds to answer.
			c, err := m.identity()
			if err != nil {
				return nil, identityError{err}
			}
			cred = c
		}
		var pool *x509.CertPool
		if caFile != "" {
			data, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("reading --tcr-api-ca-file: %w", err)
			}
			if pool, err = credcheck.ParseCAs(caFile, data); err != nil {
				return nil, err
			}
		}
		return tcrapi.New(tcrapi.Config{Endpoint: endpoint, RootCAs: pool}, cred, region), nil
	}
	return m
}

func (m *minter) credential(ctx context.Context, ips *tcrv1.ImagePullSecret) (sourced, *invalid, error) {
	it := ips.Spec.Docker.InstanceToken
	cred, digest, bad, err := m.apiKey(ctx, it)
	if bad != nil || err != nil {
		return sourced{}, bad, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.state(ctx, ips.UID)
	if err != nil {
		return sourced{}, nil, err
	}
	now := m.now()
	want := tokenRecord{RegistryID: it.RegistryID, Region: it.Region, Type: string(it.TokenType()), KeyDigest: digest}
	if it.APIKeySecretRef != nil {
		want.APIKeySecret = it.APIKeySecretRef.Name
	}
	current := st.rec.Token != "" && st.rec.RegistryID == want.RegistryID && st.rec.Region == want.Region &&
		st.rec.Type == want.Type && st.rec.KeyDigest == want.KeyDigest && st.rec.APIKeySecret == want.APIKeySecret
	if !current || st.rec.RefreshAt != 0 && now.Unix() >= st.rec.RefreshAt {
		if now.Before(st.retryAt) {
			return m.answer(ips, st, st.retryAt)
		}
		m.mint(ctx, ips, st, cred, want)
		if st.err != nil {
			return m.answer(ips, st, st.retryAt)
		}
	}
	if len(st.rec.Revoke) > 0 && !now.Before(st.retryAt) {
		m.revokeReplaced(ctx, ips, st, cred)
	}
	next := time.Time{}
	if st.rec.RefreshAt != 0 {
		next = time.Unix(st.rec.RefreshAt, 0)
	}
	if len(st.rec.Revoke) > 0 && (next.IsZero() || st.retryAt.Before(next)) {
		next = st.retryAt
	}
	return m.answer(ips, st, next)
}

// answer is the credential of st: its token, or, when no token was ever minted, the last error.
func (m *minter) answer(ips *tcrv1.ImagePullSecret, st *mintState, next time.Time) (sourced, *invalid, error) {
	rep := &mintReport{ok: st.err == nil, reason: tcrv1.ReasonMinted, tokenID: st.rec.TokenID}
	if st.rec.Type != string(tcrv1.InstanceTokenLongTerm) {
		rep.tokenID = ""
	}
	if st.err == nil {
		rep.message = fmt.Sprintf("minted a %s token of instance %s", st.rec.Type, st.rec.RegistryID)
		if st.rec.ExpiresAt != 0 {
			rep.message += " that expires at " + time.Unix(st.rec.ExpiresAt, 0).UTC().Format(time.RFC3339)
		}
	} else {
		rep.reason, rep.message = mintFailure(st.err)
	}
	src := sourced{next: next, minted: rep}
	if st.rec.Token == "" {
		return src, &invalid{reason: rep.reason, message: rep.message, retryAt: next}, nil
	}
	src.cred = credential{server: ips.Spec.Docker.Server, username: st.rec.Username, password: st.rec.Token}
	if st.rec.ExpiresAt != 0 {
		src.cred.expiry = time.Unix(st.rec.ExpiresAt, 0)
	}
	return src, nil, nil
}

// mintFailure is the reason and message of a failed mint.
func mintFailure(err error) (reason, message string) {
	reason, message = failure(err)
	return reason, "CreateInstanceToken failed: " + message + "; the distributed Secrets are left as they are"
}

// failure is the reason and message of a failed call: for an API error, its code (with "_" for
// ".", which a reason cannot hold) and its exact code and message, without the request ID, which
// differs for every call (one message, one Event).
func failure(err error) (reason, message string) {
	if apiErr, ok := errors.AsType[*tcrapi.APIError](err); ok {
		return apiErr.Reason(), apiErr.Code + ": " + apiErr.Message
	}
	if _, ok := errors.AsType[identityError](err); ok {
		return tcrv1.ReasonCloudCredentialUnavailable, err.Error()
	}
	return "TCRAPIUnreachable", err.Error()
}

// identityError: a rule without apiKeySecretRef, and no cloud identity of the manager's.
type identityError struct{ err error }

func (e identityError) Error() string {
	return "docker.instanceToken has no apiKeySecretRef and the manager's own cloud identity is unavailable: " + e.err.Error()
}

// mint calls CreateInstanceToken once and records the token, or the error and the next retry.
func (m *minter) mint(ctx context.Context, ips *tcrv1.ImagePullSecret, st *mintState, cred common.CredentialIface, want tokenRecord) {
	now := m.now()
	api, err := m.api(cred, want.Region)
	var tok tcrapi.Token
	if err == nil {
		tok, err = api.CreateInstanceToken(ctx, want.RegistryID, want.Type == string(tcrv1.InstanceTokenLongTerm), m.marker(ips.UID))
	}
	if err != nil {
		m.failed(ctx, ips, st, "CreateInstanceToken", err)
		return
	}
	rec := want
	rec.Username, rec.Token, rec.TokenID, rec.MintedAt = tok.Username, tok.Token, tok.TokenID, now.Unix()
	rec.Revoke = st.rec.Revoke
	if st.rec.TokenID != "" && st.rec.Type == string(tcrv1.InstanceTokenLongTerm) && st.rec.TokenID != tok.TokenID {
		rec.Revoke = append(rec.Revoke, revocation{RegistryID: st.rec.RegistryID, Region: st.rec.Region, TokenID: st.rec.TokenID})
	}
	if !tok.ExpiresAt.IsZero() {
		rec.ExpiresAt = tok.ExpiresAt.Unix()
		life := tok.ExpiresAt.Sub(now)
		rec.RefreshAt = now.Add(time.Duration(float64(life) * (refreshFrom + refreshSpread*m.rand()))).Unix()
	}
	if err := m.save(ctx, ips, rec); err != nil {
		// The token works but is not recorded: a LongTerm one is found by its marker and
		// revoked by the next mint on that instance.
		m.failed(ctx, ips, st, "", err)
		return
	}
	st.rec, st.failures, st.retryAt, st.err = rec, 0, time.Time{}, nil
	mintedGauge.WithLabelValues(ips.Name).Set(float64(now.Unix()))
	ctrl.LoggerFrom(ctx).Info("Minted an instance token", "registryId", rec.RegistryID, "type", rec.Type,
		"tokenId", rec.TokenID, "expiresAt", rec.ExpiresAt)
	if want.Type == string(tcrv1.InstanceTokenLongTerm) {
		m.sweep(ctx, api, ips, rec)
	}
}

// failed records a failed call and when to retry it.
func (m *minter) failed(ctx context.Context, ips *tcrv1.ImagePullSecret, st *mintState, action string, err error) {
	st.failures++
	b := retryBackoff
	code := "Unreachable"
	if apiErr, ok := errors.AsType[*tcrapi.APIError](err); ok {
		code = apiErr.Code
	}
	_, noIdentity := errors.AsType[identityError](err)
	if noIdentity {
		code = tcrv1.ReasonCloudCredentialUnavailable
	}
	if noIdentity || tcrapi.IsAuthError(err) {
		b = authRetryBackoff
	}
	if action != "" {
		tokenErrors.WithLabelValues(action, metricCode(code)).Inc()
	}
	st.err, st.retryAt = err, m.now().Add(b.after(st.failures))
	ctrl.LoggerFrom(ctx).Error(err, "Calling the TCR API failed; retrying", "action", action, "retryAt", st.retryAt.UTC().Format(time.RFC3339))
}

// metricCode bounds the label values an API can put in a metric.
func metricCode(code string) string {
	plain := func(c rune) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_'
	}
	if len(code) > 64 || strings.ContainsFunc(code, func(c rune) bool { return !plain(c) }) {
		return "Other"
	}
	return code
}

// marker is the Desc of the tokens minted for the rule uid.
func (m *minter) marker(uid types.UID) string {
	cluster := ""
	if ns := m.r.store.namespace(m.r.opts.Namespace); ns != nil {
		cluster = string(ns.UID)
	}
	return tokenMarker + cluster + "/" + string(uid)
}

// sweep revokes the LongTerm tokens of this cluster on the instance of rec that lost their rule,
// and the rule's own tokens other than rec's. Failures are logged: the next sweep tries again.
func (m *minter) sweep(ctx context.Context, api tokenAPI, ips *tcrv1.ImagePullSecret, rec tokenRecord) {
	tokens, err := api.DescribeInstanceToken(ctx, rec.RegistryID)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the instance tokens to revoke those of deleted rules failed", "registryId", rec.RegistryID)
		return
	}
	prefix := strings.TrimSuffix(m.marker(""), "/") + "/"
	live := map[types.UID]bool{}
	for _, o := range m.r.imagePullSecrets(ctx) {
		live[o.UID] = true
	}
	for _, tok := range tokens {
		uid, ours := strings.CutPrefix(tok.Desc, prefix)
		if !ours || tok.ID == rec.TokenID || live[types.UID(uid)] && types.UID(uid) != ips.UID {
			continue
		}
		if err := revoke(ctx, api, rec.RegistryID, tok.ID); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Revoking an orphaned instance token failed", "registryId", rec.RegistryID, "tokenId", tok.ID)
			continue
		}
		ctrl.LoggerFrom(ctx).Info("Revoked an orphaned instance token", "registryId", rec.RegistryID, "tokenId", tok.ID, "rule", uid)
	}
}

// revokeReplaced revokes the LongTerm tokens that the current token replaced.
func (m *minter) revokeReplaced(ctx context.Context, ips *tcrv1.ImagePullSecret, st *mintState, cred common.CredentialIface) {
	left := st.rec.Revoke[:0:0]
	var failure error
	for _, rv := range st.rec.Revoke {
		api, err := m.api(cred, rv.Region)
		if err == nil {
			err = revoke(ctx, api, rv.RegistryID, rv.TokenID)
		}
		if err != nil {
			failure = err
			left = append(left, rv)
		}
	}
	if failure != nil {
		m.failed(ctx, ips, st, "DeleteInstanceToken", failure)
		st.err = nil // the token in use is fine; only its predecessor waits
	}
	if len(left) == len(st.rec.Revoke) {
		return
	}
	rec := st.rec
	rec.Revoke = left
	if err := m.save(ctx, ips, rec); err == nil {
		st.rec = rec
	}
}

// revoke deletes a token and confirms that it is gone. A token already gone is revoked.
func revoke(ctx context.Context, api tokenAPI, registryID, tokenID string) error {
	if err := api.DeleteInstanceToken(ctx, registryID, tokenID); err != nil && !tcrapi.IsNotFound(err) {
		return err
	}
	tokens, err := api.DescribeInstanceToken(ctx, registryID)
	if err != nil {
		if tcrapi.IsNotFound(err) {
			return nil // the instance itself is gone
		}
		return err
	}
	for _, t := range tokens {
		if t.ID == tokenID {
			return fmt.Errorf("instance token %s of %s is still listed after DeleteInstanceToken", tokenID, registryID)
		}
	}
	return nil
}

// apiKey returns the API credential of it, and a digest of it that says when it changed; nil
// for the manager's own cloud identity.
func (m *minter) apiKey(ctx context.Context, it *tcrv1.InstanceToken) (common.CredentialIface, string, *invalid, error) {
	if it.APIKeySecretRef == nil {
		return nil, "identity", nil, nil // the manager's own identity, asked when a call is due
	}
	name := it.APIKeySecretRef.Name
	s, bad, err := m.r.sourceSecret(ctx, name, "docker.instanceToken.apiKeySecretRef", tcrv1.ReasonAPIKeySecretNotFound, "nothing is minted with it")
	if s == nil {
		return nil, "", bad, err
	}
	id, key, token := s.Data["SecretId"], s.Data["SecretKey"], s.Data["Token"]
	if len(id) == 0 || len(key) == 0 {
		return nil, "", &invalid{reason: tcrv1.ReasonAPIKeySecretNotFound, message: fmt.Sprintf(
			"Secret %s/%s named by docker.instanceToken.apiKeySecretRef needs the keys SecretId and SecretKey", m.r.opts.Namespace, name)}, nil
	}
	h := sha256.New()
	for _, v := range [][]byte{id, key, token} {
		h.Write(v)
		h.Write([]byte{0})
	}
	var cred common.CredentialIface = common.NewCredential(string(id), string(key))
	if len(token) > 0 {
		cred = common.NewTokenCredential(string(id), string(key), string(token))
	}
	return cred, hex.EncodeToString(h.Sum(nil)), nil, nil
}

// state returns what the minter knows of the rule uid, read from its state Secret after a restart.
func (m *minter) state(ctx context.Context, uid types.UID) (*mintState, error) {
	st := m.byOwner[uid]
	if st == nil {
		st = &mintState{}
		m.byOwner[uid] = st
	}
	if st.loaded {
		return st, nil
	}
	s := &corev1.Secret{}
	err := m.r.own.Get(ctx, types.NamespacedName{Namespace: m.r.opts.Namespace, Name: tokenStatePrefix + string(uid)}, s)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading the token state Secret: %w", err)
	default:
		// A state that does not parse is minted again.
		_ = json.Unmarshal(s.Data[tokenStateKey], &st.rec)
	}
	st.loaded = true
	return st, nil
}

// save writes rec to the state Secret of ips, owned by ips so that it goes with it.
func (m *minter) save(ctx context.Context, ips *tcrv1.ImagePullSecret, rec tokenRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: m.r.opts.Namespace, Name: tokenStatePrefix + string(ips.UID),
			Annotations: map[string]string{tcrv1.OwnerLabel: ips.Name},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: tcrv1.GroupVersion.String(), Kind: kindImagePullSecret, Name: ips.Name, UID: ips.UID,
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{tokenStateKey: data},
	}
	err = m.r.client.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		patch, _ := json.Marshal(map[string]any{"data": s.Data})
		err = m.r.client.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch))
	}
	if err != nil {
		return fmt.Errorf("writing the token state Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// revokeAll revokes the LongTerm tokens of the rule ips being deleted: its current one (from
// the state Secret, or status.instanceTokenId when that is gone) and those it replaced. It
// returns a reason and message when it could not, and deletes the state Secret when it could.
func (m *minter) revokeAll(ctx context.Context, ips *tcrv1.ImagePullSecret) (reason, message string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.state(ctx, ips.UID)
	if err != nil {
		return "", "", err
	}
	var todo []revocation
	it := ips.Spec.Docker.InstanceToken
	if it == nil && st.rec.RegistryID != "" {
		// The rule no longer names an instance: the key its token was minted with.
		it = &tcrv1.InstanceToken{RegistryID: st.rec.RegistryID, Region: st.rec.Region}
		if st.rec.APIKeySecret != "" {
			it.APIKeySecretRef = &tcrv1.SecretReference{Name: st.rec.APIKeySecret}
		}
	}
	switch {
	case st.rec.TokenID != "" && st.rec.Type == string(tcrv1.InstanceTokenLongTerm):
		todo = append(todo, revocation{RegistryID: st.rec.RegistryID, Region: st.rec.Region, TokenID: st.rec.TokenID})
	case ips.Status.InstanceTokenID != "" && it != nil:
		todo = append(todo, revocation{RegistryID: it.RegistryID, Region: it.Region, TokenID: ips.Status.InstanceTokenID})
	}
	todo = append(todo, st.rec.Revoke...)
	if len(todo) > 0 {
		if it == nil {
			it = &tcrv1.InstanceToken{}
		}
		cred, _, bad, err := m.apiKey(ctx, it)
		if err != nil {
			return "", "", err
		}
		if bad != nil {
			return bad.reason, fmt.Sprintf("the LongTerm instance token %s cannot be revoked: %s; the finalizer stays until it can, or until you remove it (README, \"Instance tokens\")",
				todo[0].TokenID, bad.message), nil
		}
		for _, rv := range todo {
			api, err := m.api(cred, rv.Region)
			if err == nil {
				err = revoke(ctx, api, rv.RegistryID, rv.TokenID)
			}
			if err != nil {
				reason, msg := failure(err)
				if apiErr, ok := errors.AsType[*tcrapi.APIError](err); ok {
					tokenErrors.WithLabelValues("DeleteInstanceToken", metricCode(apiErr.Code)).Inc()
				}
				return reason, fmt.Sprintf("revoking the LongTerm instance token %s of %s failed: %s; retrying", rv.TokenID, rv.RegistryID, msg), nil
			}
			ctrl.LoggerFrom(ctx).Info("Revoked the instance token of a deleted rule", "registryId", rv.RegistryID, "tokenId", rv.TokenID)
		}
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.r.opts.Namespace, Name: tokenStatePrefix + string(ips.UID)}}
	if err := m.r.client.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
		return "", "", fmt.Errorf("deleting the token state Secret: %w", err)
	}
	delete(m.byOwner, ips.UID)
	return "", "", nil
}

// forget drops what the minter knows of a deleted rule.
func (m *minter) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byOwner, uid)
}

// hasTokens reports whether ips has minted tokens that may need revoking: it names an instance,
// or its status or a state Secret says it did.
func (r *Reconciler) hasTokens(ctx context.Context, ips *tcrv1.ImagePullSecret) bool {
	if ips.Spec.Docker.InstanceToken != nil || ips.Status.InstanceTokenID != "" {
		return true
	}
	s := &corev1.Secret{}
	return !apierrors.IsNotFound(r.own.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: tokenStatePrefix + string(ips.UID)}, s))
}

// revokeOnSwitch revokes the tokens of a rule that no longer names an instance (its spec
// switched to a password), and drops their state. A failure is logged and retried by the next
// full pass.
func (r *Reconciler) revokeOnSwitch(ctx context.Context, ips *tcrv1.ImagePullSecret) {
	if ips.Spec.Docker.InstanceToken != nil || !r.hasTokens(ctx, ips) {
		return
	}
	if reason, msg, err := r.minter.revokeAll(ctx, ips); err != nil || reason != "" {
		ctrl.LoggerFrom(ctx).Error(err, "Revoking the instance token of a rule that no longer names an instance failed; retrying", "reason", reason, "message", msg)
	}
}

// revokeTokens is the finalizer's step for minted tokens: it revokes the LongTerm tokens of the
// rule being deleted, or reports in the condition TokenRevoked why it cannot (with one Warning
// Event) and returns an error, so that the finalizer stays and the pass is retried with backoff.
func (r *Reconciler) revokeTokens(ctx context.Context, ips *tcrv1.ImagePullSecret) error {
	if !r.hasTokens(ctx, ips) {
		return nil
	}
	reason, msg, err := r.minter.revokeAll(ctx, ips)
	if err != nil || reason == "" {
		return err
	}
	cur := &ips.Status
	if !conditionIs(cur, tcrv1.ConditionTokenRevoked, metav1.ConditionFalse, reason, msg) {
		r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, reason, "RevokeCredential", "%s", msg)
		st := cur.DeepCopy()
		setCondition(st, ips.Generation, tcrv1.ConditionTokenRevoked, metav1.ConditionFalse, reason, msg)
		if _, err := r.writeStatus(ctx, ips, cur, st); err != nil {
			return err
		}
	}
	return errors.New(msg)
}

// mintedStatus sets the CredentialMinted condition and status.instanceTokenId from rep (nil for
// a rule whose credential is not minted), with one Warning Event when the condition turns False
// or its failure changes.
func (r *Reconciler) mintedStatus(ips *tcrv1.ImagePullSecret, rep *mintReport, cur, st *tcrv1.ImagePullSecretStatus) {
	if rep == nil {
		meta.RemoveStatusCondition(&st.Conditions, tcrv1.ConditionCredentialMinted)
		st.InstanceTokenID = ""
		return
	}
	st.InstanceTokenID = rep.tokenID
	if rep.ok {
		setCondition(st, ips.Generation, tcrv1.ConditionCredentialMinted, metav1.ConditionTrue, rep.reason, rep.message)
		return
	}
	if !conditionIs(cur, tcrv1.ConditionCredentialMinted, metav1.ConditionFalse, rep.reason, rep.message) {
		r.recorder.Eventf(ips, nil, corev1.EventTypeWarning, rep.reason, "MintCredential", "%s", rep.message)
	}
	setCondition(st, ips.Generation, tcrv1.ConditionCredentialMinted, metav1.ConditionFalse, rep.reason, rep.message)
}
