package controllers_test

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestSampleDistributesToEveryNamespaceAndLaterOnes follows the original documentation: the
// sample CR ("*", "*") reaches every namespace and ServiceAccount, including a namespace and a
// ServiceAccount created afterwards, and deleting it removes everything it added.
func TestSampleDistributesToEveryNamespaceAndLaterOnes(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "sample-a", nil, "default", "builder")
	createNamespace(t, "sample-b", nil, "default")

	_, _, err := env.Kubectl("", "apply", "-f", env.Root+"/config/samples/imagepullsecret-sample.yaml")
	require.NoError(t, err)
	t.Cleanup(func() { deleteIPS(t, "imagepullsecret-sample") })
	const secretName = "tcr.ipsimagepullsecret-sample"
	want := expectedDockerConfig("fanjiankong-bj.tencentcloudcr.com", "100012345678", "tcr.jwt.token")

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range []string{"sample-a", "sample-b"} {
			s, err := getSecret(ns, secretName)
			if !assert.NoError(c, err) {
				return
			}
			assert.Equal(c, corev1.SecretTypeDockerConfigJson, s.Type)
			assert.Equal(c, want, string(s.Data[corev1.DockerConfigJsonKey]))
			assert.Equal(c, tcrv1.ManagedByValue, s.Labels[tcrv1.ManagedByLabel])
			assert.Equal(c, "imagepullsecret-sample", s.Labels[tcrv1.OwnerLabel])
			if assert.NotNil(c, metav1.GetControllerOf(s)) {
				assert.Equal(c, "imagepullsecret-sample", metav1.GetControllerOf(s).Name)
			}
		}
		assert.Equal(c, []string{secretName}, pullSecrets(c, "sample-a", "default"))
		assert.Equal(c, []string{secretName}, pullSecrets(c, "sample-a", "builder"))
		assert.Equal(c, []string{secretName}, pullSecrets(c, "sample-b", "default"))
	}, timeout, tick)

	// The two flows of the original documentation: a new namespace, a new ServiceAccount.
	createNamespace(t, "sample-c", nil, "default")
	createServiceAccount(t, "sample-b", "deployer", "existing")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("sample-c", secretName)
		assert.NoError(c, err)
		assert.Equal(c, []string{secretName}, pullSecrets(c, "sample-c", "default"))
		assert.Equal(c, []string{"existing", secretName}, pullSecrets(c, "sample-b", "deployer"))
	}, timeout, tick)

	// Status counters are exact: every non-terminating namespace, every ServiceAccount in them.
	eventuallyStatus(t, "imagepullsecret-sample", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		nss, sas := liveTargets(c)
		assert.Equal(c, nss, st.SecretsDesired)
		assert.Equal(c, nss, st.SecretsSuccess)
		assert.Equal(c, sas, st.SAsDesired)
		assert.Equal(c, sas, st.SAsSuccess)
	})
	out, _, err := env.Kubectl("", "get", "ipss")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, []string{"NAME", "NAMESPACES", "SERVICE-ACCOUNTS", "SECRETS-DESIRED", "SECRETS-SUCCESS"}, strings.Fields(lines[0]))
	nss, _ := liveTargets(t)
	assert.Equal(t, []string{"imagepullsecret-sample", "*", "*", itoa(nss), itoa(nss)}, strings.Fields(lines[1]))

	// Deleting the CR removes every Secret and every reference it added, and nothing else.
	deleteIPS(t, "imagepullsecret-sample")
	assert.Empty(t, listOwnedSecrets(t, "imagepullsecret-sample"))
	assert.Equal(t, []string{}, pullSecrets(t, "sample-a", "default"))
	assert.Equal(t, []string{"existing"}, pullSecrets(t, "sample-b", "deployer"))
	_ = ctx
}

func itoa(n int32) string { return strconvItoa(int(n)) }

// liveTargets counts the non-terminating namespaces and the ServiceAccounts in them.
func liveTargets(t require.TestingT) (namespaces, serviceAccounts int32) {
	ctx := context.Background()
	nsList := &corev1.NamespaceList{}
	require.NoError(t, env.Client.List(ctx, nsList))
	live := map[string]bool{}
	for _, ns := range nsList.Items {
		if ns.DeletionTimestamp == nil {
			live[ns.Name] = true
			namespaces++
		}
	}
	saList := &corev1.ServiceAccountList{}
	require.NoError(t, env.Client.List(ctx, saList))
	for _, sa := range saList.Items {
		if live[sa.Namespace] {
			serviceAccounts++
		}
	}
	return namespaces, serviceAccounts
}

// TestRotationUpdatesSecretsInPlace edits the password and expects every copy updated, same UID.
func TestRotationUpdatesSecretsInPlace(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "rotate-a", nil, "default")
	createNamespace(t, "rotate-b", nil, "default")
	ips := newIPS("rotate", "rotate-a, rotate-b", "*")
	createIPS(t, ips)
	uids := map[string]types.UID{}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range []string{"rotate-a", "rotate-b"} {
			s, err := getSecret(ns, "tcr.ipsrotate")
			if assert.NoError(c, err) {
				uids[ns] = s.UID
			}
		}
	}, timeout, tick)

	newPass := password("rotate-new")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "rotate")
		cur.Spec.Docker.Username = "rotated-user"
		cur.Spec.Docker.Password = newPass
		return env.Client.Update(ctx, cur)
	}))
	want := expectedDockerConfig(ips.Spec.Docker.Server, "rotated-user", newPass)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range []string{"rotate-a", "rotate-b"} {
			s, err := getSecret(ns, "tcr.ipsrotate")
			if assert.NoError(c, err) {
				assert.Equal(c, want, string(s.Data[corev1.DockerConfigJsonKey]))
				assert.Equal(c, uids[ns], s.UID, "the Secret must be updated in place")
			}
		}
	}, timeout, tick)
	eventuallyStatus(t, "rotate", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, getIPS(c, "rotate").Generation, st.ObservedGeneration)
		assert.True(c, readyStatus(st) == metav1.ConditionTrue)
	})
}

// TestEditedSecretIsRepaired edits a distributed Secret behind the controller's back (its data,
// a key added, an annotation) and expects the data repaired in place while the annotation, which
// is not the controller's, stays.
func TestEditedSecretIsRepaired(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "drift", nil, "default")
	ips := newIPS("drift", "drift", "*")
	createIPS(t, ips)
	want := expectedDockerConfig(ips.Spec.Docker.Server, ips.Spec.Docker.Username, ips.Spec.Docker.Password)
	var uid types.UID
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err := getSecret("drift", "tcr.ipsdrift")
		if assert.NoError(c, err) {
			uid = s.UID
		}
	}, timeout, tick)

	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := getSecret("drift", "tcr.ipsdrift")
		if err != nil {
			return err
		}
		s.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{}}`)
		s.Data["extra"] = []byte("x")
		s.Annotations = map[string]string{"someone/else": "kept"}
		return env.Client.Update(ctx, s)
	}))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err := getSecret("drift", "tcr.ipsdrift")
		if assert.NoError(c, err) {
			assert.Equal(c, map[string][]byte{corev1.DockerConfigJsonKey: []byte(want)}, s.Data)
			assert.Equal(c, "kept", s.Annotations["someone/else"])
			assert.Equal(c, uid, s.UID, "the Secret must be repaired in place")
		}
	}, timeout, tick)
}

func readyStatus(st tcrv1.ImagePullSecretStatus) metav1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

// TestRetargetingRemovesOnlyOurEntries narrows namespaces and serviceAccounts and expects the
// Secret and the reference removed where they no longer match, with other entries kept in order.
func TestRetargetingRemovesOnlyOurEntries(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "narrow-a", nil)
	createNamespace(t, "narrow-b", nil)
	for _, ns := range []string{"narrow-a", "narrow-b"} {
		createServiceAccount(t, ns, "default", "zeta")
		createServiceAccount(t, ns, "builder", "zeta", "alpha")
	}
	createIPS(t, newIPS("narrow", "narrow-a,narrow-b", "default,builder"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range []string{"narrow-a", "narrow-b"} {
			assert.Equal(c, []string{"zeta", "tcr.ipsnarrow"}, pullSecrets(c, ns, "default"))
			assert.Equal(c, []string{"zeta", "alpha", "tcr.ipsnarrow"}, pullSecrets(c, ns, "builder"))
		}
	}, timeout, tick)
	// Someone adds an entry after ours: it must stay after ours when ours goes.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sa := &corev1.ServiceAccount{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: "narrow-a", Name: "builder"}, sa); err != nil {
			return err
		}
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "mid"})
		return env.Client.Update(ctx, sa)
	}))

	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "narrow")
		cur.Spec.Namespaces = "narrow-a"
		cur.Spec.ServiceAccounts = "default"
		return env.Client.Update(ctx, cur)
	}))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("narrow-b", "tcr.ipsnarrow")
		assert.True(c, apierrors.IsNotFound(err), "the Secret in narrow-b must be deleted")
		assert.Equal(c, []string{"zeta"}, pullSecrets(c, "narrow-b", "default"))
		assert.Equal(c, []string{"zeta", "alpha"}, pullSecrets(c, "narrow-b", "builder"))
		assert.Equal(c, []string{"zeta", "tcr.ipsnarrow"}, pullSecrets(c, "narrow-a", "default"))
		assert.Equal(c, []string{"zeta", "alpha", "mid"}, pullSecrets(c, "narrow-a", "builder"))
		_, err = getSecret("narrow-a", "tcr.ipsnarrow")
		assert.NoError(c, err)
	}, timeout, tick)
	eventuallyStatus(t, "narrow", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.SecretsDesired)
		assert.Equal(c, int32(1), st.SecretsSuccess)
		assert.Equal(c, int32(1), st.SAsDesired)
		assert.Equal(c, int32(1), st.SAsSuccess)
		assert.Equal(c, []string{"narrow-a/tcr.ipsnarrow"}, names(st.SecretUpdateSuccessful))
		assert.Equal(c, []string{"narrow-a/default"}, names(st.ServiceAccountsModifySuccessful))
	})
}

func names(list []tcrv1.TargetUpdate) []string {
	out := []string{}
	for _, u := range list {
		out = append(out, u.NamespacedName)
	}
	return out
}

// TestConcurrentServiceAccountEditsAreNotLost races other writers appending to the same
// ServiceAccounts with the controller adding its entry: every entry must survive, ours once.
func TestConcurrentServiceAccountEditsAreNotLost(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	const writers, perWriter = 3, 5
	var namespaces []string
	for i := range 4 {
		ns := "race-" + strconvItoa(i)
		namespaces = append(namespaces, ns)
		createNamespace(t, ns, nil, "default")
	}
	createIPS(t, newIPS("race", "race-0,race-1,race-2,race-3", "default"))
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					name := "user-" + strconvItoa(w) + "-" + strconvItoa(i)
					assert.NoError(t, retry.RetryOnConflict(patientRetry, func() error {
						sa := &corev1.ServiceAccount{}
						if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default"}, sa); err != nil {
							return err
						}
						sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
						return env.Client.Update(ctx, sa)
					}))
				}
			})
		}
	}
	wg.Wait()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, ns := range namespaces {
			got := pullSecrets(c, ns, "default")
			assert.Len(c, got, writers*perWriter+1, ns)
			for w := range writers {
				var mine []string
				for _, n := range got {
					if strings.HasPrefix(n, "user-"+strconvItoa(w)+"-") {
						mine = append(mine, n)
					}
				}
				want := []string{}
				for i := range perWriter {
					want = append(want, "user-"+strconvItoa(w)+"-"+strconvItoa(i))
				}
				assert.Equal(c, want, mine, "entries of writer %d in %s, in order", w, ns)
			}
			assert.Equal(c, 1, count(got, "tcr.ipsrace"), ns)
		}
	}, timeout, tick)
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// TestForeignSecretIsLeftUntouched pre-creates a same-name Secret the controller does not own. It
// even carries our labels (so it is in the controller's cache and in the finalizer's list), but no
// controller reference: it is reported while the ImagePullSecret lives, never written, and not
// deleted when the ImagePullSecret is; a reference the user added to it stays.
func TestForeignSecretIsLeftUntouched(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "foreign-a", nil, "default")
	createNamespace(t, "foreign-b", nil, "default")
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "foreign-a", Name: "tcr.ipsforeign", Labels: map[string]string{
			tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: "foreign", "team": "a"}},
		Data: map[string][]byte{"token": []byte("theirs")},
	}
	require.NoError(t, env.Client.Create(ctx, foreign))
	createServiceAccount(t, "foreign-a", "user", "mine", "tcr.ipsforeign")
	ips := newIPS("foreign", "foreign-a,foreign-b", "default")
	createIPS(t, ips)

	eventuallyStatus(t, "foreign", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(2), st.SecretsDesired)
		assert.Equal(c, int32(1), st.SecretsSuccess)
		assert.Equal(c, int32(2), st.SAsDesired)
		assert.Equal(c, int32(1), st.SAsSuccess)
		if assert.Len(c, st.Failures, 1) {
			assert.Equal(c, tcrv1.TargetFailure{
				Kind: "Secret", NamespacedName: "foreign-a/tcr.ipsforeign", Reason: "SecretNotOwned",
				Message: "Secret foreign-a/tcr.ipsforeign exists and is not managed by this ImagePullSecret; it was left untouched: delete or rename it to let tcr-assistant create its own",
			}, st.Failures[0])
		}
		assert.Equal(c, metav1.ConditionFalse, readyStatus(st))
	})
	got, err := getSecret("foreign-a", "tcr.ipsforeign")
	require.NoError(t, err)
	assert.Equal(t, foreign.ResourceVersion, got.ResourceVersion, "the foreign Secret must not be written")
	assert.Equal(t, []string{}, pullSecrets(t, "foreign-a", "default"), "no reference to a foreign Secret")
	assert.Equal(t, []string{"mine", "tcr.ipsforeign"}, pullSecrets(t, "foreign-a", "user"))
	assert.Equal(t, []string{"tcr.ipsforeign"}, pullSecrets(t, "foreign-b", "default"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ev := eventsFor(c, "foreign", "SecretNotOwned")
		if assert.Len(c, ev, 1) {
			assert.Nil(c, ev[0].Series, "sent once, not once per pass")
			assert.Equal(c, "Warning", ev[0].Type)
			assert.Equal(c, "Secret foreign-a/tcr.ipsforeign exists and is not managed by this ImagePullSecret; it was left untouched", ev[0].Note)
		}
	}, timeout, tick)

	// Deleting the CR deletes its own Secret and reference, and leaves the foreign Secret and the
	// user's reference to it alone.
	deleteIPS(t, "foreign")
	got, err = getSecret("foreign-a", "tcr.ipsforeign")
	require.NoError(t, err, "the foreign Secret must survive the cleanup")
	assert.Equal(t, foreign.ResourceVersion, got.ResourceVersion)
	assert.Equal(t, []string{"mine", "tcr.ipsforeign"}, pullSecrets(t, "foreign-a", "user"))
	_, err = getSecret("foreign-b", "tcr.ipsforeign")
	assert.True(t, apierrors.IsNotFound(err), "our own Secret is removed")
	assert.Equal(t, []string{}, pullSecrets(t, "foreign-b", "default"))
}

// TestSecretOfDeletedImagePullSecretIsCleanedUp leaves Secrets behind as if an ImagePullSecret had
// been deleted with its finalizer removed by hand: the namespace pass of an ImagePullSecret that
// no longer exists deletes the one that is its by the ownership rule, with the references to it,
// and leaves one that is not (the owner label of another) alone.
func TestSecretOfDeletedImagePullSecretIsCleanedUp(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "orphan-a", nil)
	createNamespace(t, "orphan-b", nil)
	createServiceAccount(t, "orphan-a", "app", "zz-user", "tcr.ipsgone", "aa-user")
	createServiceAccount(t, "orphan-b", "app", "tcr.ipsgone")
	yes := true
	leftover := func(ns, ownerLabel string) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tcr.ipsgone",
				Labels: map[string]string{tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: ownerLabel},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret",
					Name: "gone", UID: "0b3c0c6e-0000-4000-8000-000000000001", Controller: &yes}}},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
		}
		require.NoError(t, env.Client.Create(ctx, s))
		return s
	}
	passes := reconcileCount(t)
	notOurs := leftover("orphan-b", "someone-else")
	leftover("orphan-a", "gone")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, reconcileCount(c), passes+2, "both Secrets had their namespace pass")
		_, err := getSecret("orphan-a", "tcr.ipsgone")
		assert.True(c, apierrors.IsNotFound(err), "the leftover Secret must be deleted")
		assert.Equal(c, []string{"zz-user", "aa-user"}, pullSecrets(c, "orphan-a", "app"))
	}, timeout, tick)
	got, err := getSecret("orphan-b", "tcr.ipsgone")
	require.NoError(t, err, "a Secret that fails the ownership rule is never deleted")
	assert.Equal(t, notOurs.ResourceVersion, got.ResourceVersion)
	assert.Equal(t, []string{"tcr.ipsgone"}, pullSecrets(t, "orphan-b", "app"))
}

// eventsFor returns the events.k8s.io Events about the ImagePullSecret name with reason.
func eventsFor(t require.TestingT, name, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	require.NoError(t, env.Client.List(context.Background(), list))
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "ImagePullSecret" && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// TestTerminatingNamespacesAreSkipped deletes a namespace (it never finishes terminating here)
// and expects it neither written nor counted.
func TestTerminatingNamespacesAreSkipped(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "term-live", nil, "default")
	createNamespace(t, "term-gone", nil, "default")
	require.NoError(t, env.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "term-gone"}}))
	createIPS(t, newIPS("term", "term-live,term-gone", "*"))
	eventuallyStatus(t, "term", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(1), st.SecretsDesired)
		assert.Equal(c, int32(1), st.SecretsSuccess)
		assert.Equal(c, int32(1), st.SAsDesired)
		assert.Equal(c, int32(1), st.SAsSuccess)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	_, err := getSecret("term-gone", "tcr.ipsterm")
	assert.True(t, apierrors.IsNotFound(err))
	assert.Equal(t, []string{}, pullSecrets(t, "term-gone", "default"))
}

// TestTwoImagePullSecretsShareANamespace expects two Secrets and two references.
func TestTwoImagePullSecretsShareANamespace(t *testing.T) {
	startManager(t)
	createNamespace(t, "shared", nil, "default")
	createIPS(t, newIPS("one", "shared", "default"))
	createIPS(t, newIPS("two", "shared", "default"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("shared", "tcr.ipsone")
		assert.NoError(c, err)
		_, err = getSecret("shared", "tcr.ipstwo")
		assert.NoError(c, err)
		got := pullSecrets(c, "shared", "default")
		slices.Sort(got)
		assert.Equal(c, []string{"tcr.ipsone", "tcr.ipstwo"}, got)
	}, timeout, tick)
	two, err := getSecret("shared", "tcr.ipstwo")
	require.NoError(t, err)
	deleteIPS(t, "one")
	assert.Equal(t, []string{"tcr.ipstwo"}, pullSecrets(t, "shared", "default"))
	_, err = getSecret("shared", "tcr.ipsone")
	assert.True(t, apierrors.IsNotFound(err))
	still, err := getSecret("shared", "tcr.ipstwo")
	require.NoError(t, err)
	assert.Equal(t, two.UID, still.UID, "deleting one ImagePullSecret must not delete (and let recreate) the other's Secret")
	assert.Equal(t, two.ResourceVersion, still.ResourceVersion)
}

// TestStatusListsAreSortedCappedAndStable checks the capped, sorted lists, the Ready condition
// and that a pass that changes nothing writes nothing (status included).
func TestStatusListsAreSortedCappedAndStable(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	var nss []string
	for _, suffix := range []string{"g", "c", "a", "f", "b", "e", "d"} {
		ns := "capped-" + suffix
		nss = append(nss, ns)
		createNamespace(t, ns, nil, "default")
	}
	createIPS(t, newIPS("capped", strings.Join(nss, ","), "default"))
	eventuallyStatus(t, "capped", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, int32(7), st.SecretsDesired)
		assert.Equal(c, int32(7), st.SecretsSuccess)
		assert.Equal(c, int32(7), st.SAsDesired)
		assert.Equal(c, int32(7), st.SAsSuccess)
		assert.Equal(c, []string{"capped-a/tcr.ipscapped", "capped-b/tcr.ipscapped", "capped-c/tcr.ipscapped",
			"capped-d/tcr.ipscapped", "capped-e/tcr.ipscapped"}, names(st.SecretUpdateSuccessful))
		assert.Equal(c, []string{"capped-a/default", "capped-b/default", "capped-c/default", "capped-d/default",
			"capped-e/default"}, names(st.ServiceAccountsModifySuccessful))
		assert.Empty(c, st.Failures)
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
		for _, cond := range st.Conditions {
			assert.Equal(c, getIPS(c, "capped").Generation, cond.ObservedGeneration)
		}
	})
	// Converged: cause a namespace pass and a status pass that have nothing to do, and count
	// every request the manager sends meanwhile that is not a read. (The API server drops an
	// identical write without bumping the resourceVersion, so comparing versions would not
	// show a status or an annotation written again on every pass.)
	before := getIPS(t, "capped")
	writes, passes := managerWrites.Load(), reconcileCount(t)
	touch := func(obj client.Object) {
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			obj.SetAnnotations(map[string]string{"touched": "yes"})
			return env.Client.Update(ctx, obj)
		}))
	}
	touch(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "capped-a"}})    // a namespace pass
	touch(&tcrv1.ImagePullSecret{ObjectMeta: metav1.ObjectMeta{Name: "capped"}}) // a full pass: the status
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.GreaterOrEqual(c, reconcileCount(c), passes+2) }, timeout, tick)
	assert.Equal(t, writes, managerWrites.Load(), "passes that changed nothing must write nothing")
	after := getIPS(t, "capped")
	assert.Equal(t, before.Status, after.Status)
}

// TestPasswordSecretRefRotatesEveryCopy takes the password from a Secret of the own namespace.
func TestPasswordSecretRefRotatesEveryCopy(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "ref-a", nil, "default")
	createNamespace(t, "ref-b", nil, "default")
	first := password("ref-first")
	src := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: "registry-password",
			Labels: map[string]string{tcrv1.PasswordSourceLabel: "true"}},
		Data: map[string][]byte{"password": []byte(first)},
	}
	require.NoError(t, env.Client.Create(ctx, src))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, src) })
	ips := newIPS("byref", "ref-a,ref-b", "*")
	ips.Spec.Docker.Password = ""
	ips.Spec.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "registry-password", Key: "password"}
	createIPS(t, ips)
	check := func(pass string) {
		want := expectedDockerConfig(ips.Spec.Docker.Server, ips.Spec.Docker.Username, pass)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for _, ns := range []string{"ref-a", "ref-b"} {
				s, err := getSecret(ns, "tcr.ipsbyref")
				if assert.NoError(c, err) {
					assert.Equal(c, want, string(s.Data[corev1.DockerConfigJsonKey]))
				}
			}
		}, timeout, tick)
	}
	check(first)
	second := password("ref-second")
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), cur); err != nil {
			return err
		}
		cur.Data["password"] = []byte(second)
		return env.Client.Update(ctx, cur)
	}))
	check(second)

	// Withdrawing the opt-in stops distribution from the Secret: the copies keep their last
	// good value and are not written.
	before, err := getSecret("ref-a", "tcr.ipsbyref")
	require.NoError(t, err)
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), cur); err != nil {
			return err
		}
		delete(cur.Labels, tcrv1.PasswordSourceLabel)
		cur.Data["password"] = []byte(password("ref-third"))
		return env.Client.Update(ctx, cur)
	}))
	eventuallyStatus(t, "byref", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		ready := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionReady)
		if assert.NotNil(c, ready) {
			assert.Equal(c, metav1.ConditionFalse, ready.Status)
			assert.Equal(c, tcrv1.ReasonPasswordSourceNotAllowed, ready.Reason)
			assert.Equal(c, `Secret tcr-assistant-system/registry-password named by docker.passwordSecretRef may not be a password source: `+
				`it does not carry the label tcr.tencentcloudcr.com/password-source: "true", by which a Secret opts in to being a password source; nothing is distributed from it`, ready.Message)
		}
	})
	after, err := getSecret("ref-a", "tcr.ipsbyref")
	require.NoError(t, err)
	assert.Equal(t, before.ResourceVersion, after.ResourceVersion, "the copies keep their last good value")
}

// TestPasswordSecretRefIsNoConfusedDeputy points passwordSecretRef at Secrets of the own namespace
// that may never be password sources, even labelled: the webhook's certificate Secret (its CA
// key), a ServiceAccount token and a TLS Secret. Nothing is distributed from any of them.
func TestPasswordSecretRefIsNoConfusedDeputy(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "deputy", nil, "default")
	optIn := map[string]string{tcrv1.PasswordSourceLabel: "true"}
	for _, tc := range []struct {
		secret *corev1.Secret
		key    string
		why    string
	}{{
		secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: "tcr-assistant-webhook-server-cert", Labels: optIn},
			Data: map[string][]byte{"ca.key": []byte(password("ca-key"))}},
		key: "ca.key", why: "it is the webhook's certificate Secret, which is never a password source",
	}, {
		secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ownNamespace, Name: "deputy-tls", Labels: optIn},
			Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte(password("tls-key"))}},
		key: "tls.key", why: "it is of type kubernetes.io/tls, which is never a password source",
	}} {
		require.NoError(t, env.Client.Create(ctx, tc.secret))
		t.Cleanup(func() { _ = env.Client.Delete(ctx, tc.secret) })
		name := "deputy-" + strings.ReplaceAll(tc.key, ".", "-")
		ips := newIPS(name, "deputy", "*")
		ips.Spec.Docker.Password = ""
		ips.Spec.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: tc.secret.Name, Key: tc.key}
		createIPS(t, ips)
		eventuallyStatus(t, name, func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
			ready := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionReady)
			if assert.NotNil(c, ready) {
				assert.Equal(c, tcrv1.ReasonPasswordSourceNotAllowed, ready.Reason)
				assert.Equal(c, "Secret tcr-assistant-system/"+tc.secret.Name+" named by docker.passwordSecretRef may not be a password source: "+
					tc.why+"; nothing is distributed from it", ready.Message)
			}
		})
		_, err := getSecret("deputy", tcrv1.SecretNamePrefix+name)
		assert.True(t, apierrors.IsNotFound(err), "nothing is distributed from %s", tc.secret.Name)
	}
}

// TestPasswordSecretRefMissingSetsCondition reports a missing Secret without distributing.
func TestPasswordSecretRefMissingSetsCondition(t *testing.T) {
	startManager(t)
	createNamespace(t, "noref", nil, "default")
	ips := newIPS("noref", "noref", "*")
	ips.Spec.Docker.Password = ""
	ips.Spec.Docker.PasswordSecretRef = &tcrv1.SecretKeyReference{Name: "does-not-exist", Key: "password"}
	createIPS(t, ips)
	eventuallyStatus(t, "noref", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		var ready *metav1.Condition
		for i := range st.Conditions {
			if st.Conditions[i].Type == "Ready" {
				ready = &st.Conditions[i]
			}
		}
		if assert.NotNil(c, ready) {
			assert.Equal(c, metav1.ConditionFalse, ready.Status)
			assert.Equal(c, "PasswordSecretNotFound", ready.Reason)
			assert.Equal(c, "Secret tcr-assistant-system/does-not-exist named by docker.passwordSecretRef does not exist", ready.Message)
		}
	})
	_, err := getSecret("noref", "tcr.ipsnoref")
	assert.True(t, apierrors.IsNotFound(err))
}

// patientRetry outlasts the conflicts of several writers racing on one object.
var patientRetry = wait.Backoff{Steps: 100, Duration: 5 * time.Millisecond, Factor: 1.2, Jitter: 0.5, Cap: 200 * time.Millisecond}

// TestSelectorsFollowLabelChanges uses namespaceSelector and serviceAccountSelector: relabelling
// a namespace or a ServiceAccount adds or removes the Secret and the reference.
func TestSelectorsFollowLabelChanges(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "sel-a", map[string]string{"pull": "tcr"})
	createNamespace(t, "sel-b", nil)
	for _, ns := range []string{"sel-a", "sel-b"} {
		require.NoError(t, env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "app", Labels: map[string]string{"pull": "yes"}}}))
		createServiceAccount(t, ns, "other")
	}
	ips := newIPS("sel", "*", "*")
	ips.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pull": "tcr"}}
	ips.Spec.ServiceAccountSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pull": "yes"}}
	createIPS(t, ips)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("sel-a", "tcr.ipssel")
		assert.NoError(c, err)
		assert.Equal(c, []string{"tcr.ipssel"}, pullSecrets(c, "sel-a", "app"))
		assert.Equal(c, []string{}, pullSecrets(c, "sel-a", "other"))
	}, timeout, tick)
	_, err := getSecret("sel-b", "tcr.ipssel")
	assert.True(t, apierrors.IsNotFound(err))

	relabel := func(obj client.Object, labels map[string]string) {
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			obj.SetLabels(labels)
			return env.Client.Update(ctx, obj)
		}))
	}
	relabel(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sel-b"}}, map[string]string{"pull": "tcr"})
	relabel(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sel-a"}}, nil)
	relabel(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "sel-b", Name: "other"}}, map[string]string{"pull": "yes"})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := getSecret("sel-a", "tcr.ipssel")
		assert.True(c, apierrors.IsNotFound(err), "sel-a no longer matches")
		assert.Equal(c, []string{}, pullSecrets(c, "sel-a", "app"))
		_, err = getSecret("sel-b", "tcr.ipssel")
		assert.NoError(c, err)
		assert.Equal(c, []string{"tcr.ipssel"}, pullSecrets(c, "sel-b", "app"))
		assert.Equal(c, []string{"tcr.ipssel"}, pullSecrets(c, "sel-b", "other"))
	}, timeout, tick)
	eventuallyStatus(t, "sel", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [4]int32{1, 1, 2, 2}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
	})
}

// TestLongNamesAreDistributedAndCleanedUp uses a name longer than a label value may be: the
// owner label carries a hash, and everything still works both ways.
func TestLongNamesAreDistributedAndCleanedUp(t *testing.T) {
	startManager(t)
	name := "long-" + strings.Repeat("x", 120)
	createNamespace(t, "long", nil, "default")
	createIPS(t, newIPS(name, "long", "*"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err := getSecret("long", tcrv1.SecretNamePrefix+name)
		if assert.NoError(c, err) {
			assert.Equal(c, controllers.OwnerLabelValue(name), s.Labels[tcrv1.OwnerLabel])
		}
		assert.Equal(c, []string{tcrv1.SecretNamePrefix + name}, pullSecrets(c, "long", "default"))
	}, timeout, tick)
	deleteIPS(t, name)
	_, err := getSecret("long", tcrv1.SecretNamePrefix+name)
	assert.True(t, apierrors.IsNotFound(err))
	assert.Equal(t, []string{}, pullSecrets(t, "long", "default"))
}

// TestWriteFailuresAreReported makes Secret creation fail in one namespace (a
// ValidatingAdmissionPolicy refusing it) and expects a WriteFailed failure in the status and an
// Event, while the other namespace is served.
func TestWriteFailuresAreReported(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "deny-a", map[string]string{"deny": "secrets"}, "default")
	createNamespace(t, "deny-b", nil, "default")
	fail := admissionregistrationv1.Fail
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-tcr-secrets"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!object.metadata.name.startsWith('tcr.ips')", Message: "test policy refuses tcr.ips Secrets here",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-tcr-secrets"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"deny": "secrets"}},
			},
		},
	}
	require.NoError(t, env.Client.Create(ctx, policy))
	require.NoError(t, env.Client.Create(ctx, binding))
	t.Cleanup(func() {
		_ = env.Client.Delete(ctx, binding)
		_ = env.Client.Delete(ctx, policy)
	})
	// The policy takes effect asynchronously: wait until it refuses a probe.
	require.Eventually(t, func() bool {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "deny-a", Name: "tcr.ipsprobe"}}
		if err := env.Client.Create(ctx, probe); err != nil {
			return true
		}
		_ = env.Client.Delete(ctx, probe)
		return false
	}, timeout, tick)

	createIPS(t, newIPS("deny", "deny-a,deny-b", "*"))
	eventuallyStatus(t, "deny", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [4]int32{2, 1, 2, 1}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
		if assert.Len(c, st.Failures, 1) {
			assert.Equal(c, "Secret", st.Failures[0].Kind)
			assert.Equal(c, "deny-a/tcr.ipsdeny", st.Failures[0].NamespacedName)
			assert.Equal(c, "WriteFailed", st.Failures[0].Reason)
			assert.True(c, strings.HasPrefix(st.Failures[0].Message, "creating Secret deny-a/tcr.ipsdeny: "), st.Failures[0].Message)
			assert.Contains(c, st.Failures[0].Message, "test policy refuses tcr.ips Secrets here")
		}
		assert.Equal(c, metav1.ConditionFalse, readyStatus(st))
	})
	assert.Equal(t, []string{}, pullSecrets(t, "deny-a", "default"), "no reference to a Secret that could not be created")
	assert.Equal(t, []string{"tcr.ipsdeny"}, pullSecrets(t, "deny-b", "default"))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ev := eventsFor(c, "deny", "WriteFailed")
		if assert.Len(c, ev, 1) {
			assert.Nil(c, ev[0].Series, "sent once, not once per pass")
			assert.True(c, strings.HasPrefix(ev[0].Note, "Writing Secret deny-a/tcr.ipsdeny failed: creating Secret deny-a/tcr.ipsdeny: "), ev[0].Note)
		}
	}, timeout, tick)
}

// TestSpecTheWebhookWouldRefuseIsReported stores a spec the admission webhook refuses (this
// control plane runs no webhook, as when a spec predates its installation): the controller keeps
// the original's lenient reading, where "dev-*" is the exact name of no namespace, and reports
// Valid=False with the webhook's message and one Warning Event.
func TestSpecTheWebhookWouldRefuseIsReported(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createNamespace(t, "dev-1", nil, "default")
	createIPS(t, newIPS("pattern", "dev-*", "*"))
	const message = `the admission webhook would refuse this spec: spec.namespaces: Invalid value: "dev-*": is a pattern, and patterns are not supported: list exact names, or use spec.namespaceSelector or spec.namespaceExpression`
	eventuallyStatus(t, "pattern", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		valid := meta.FindStatusCondition(st.Conditions, tcrv1.ConditionValid)
		if assert.NotNil(c, valid) {
			assert.Equal(c, metav1.ConditionFalse, valid.Status)
			assert.Equal(c, tcrv1.ReasonInvalidSpec, valid.Reason)
			assert.Equal(c, message, valid.Message)
		}
		assert.Equal(c, [4]int32{0, 0, 0, 0}, [4]int32{st.SecretsDesired, st.SecretsSuccess, st.SAsDesired, st.SAsSuccess})
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	// Another full pass must not repeat the Event.
	passes := reconcileCount(t)
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "pattern")
		cur.Annotations = map[string]string{"touched": "yes"}
		return env.Client.Update(ctx, cur)
	}))
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Greater(c, reconcileCount(c), passes) }, timeout, tick)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ev := eventsFor(c, "pattern", tcrv1.ReasonInvalidSpec)
		if assert.Len(c, ev, 1) {
			assert.Nil(c, ev[0].Series, "sent once, not once per pass")
			assert.Equal(c, "Warning", ev[0].Type)
			assert.Equal(c, message, ev[0].Note)
		}
	}, timeout, tick)

	// Fixing the spec makes it valid.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := getIPS(t, "pattern")
		cur.Spec.Namespaces = "dev-1"
		return env.Client.Update(ctx, cur)
	}))
	eventuallyStatus(t, "pattern", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.True(c, meta.IsStatusConditionTrue(st.Conditions, tcrv1.ConditionValid))
		assert.Equal(c, int32(1), st.SecretsSuccess)
	})
}

// TestOneDistributedEventPerChange: an ImagePullSecret that selects nothing is Ready at once, and
// passes that change nothing send no second Event.
func TestOneDistributedEventPerChange(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	createIPS(t, newIPS("nothing", "no-such-namespace", "*"))
	eventuallyStatus(t, "nothing", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	for i := range 3 {
		passes := reconcileCount(t)
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := getIPS(t, "nothing")
			cur.Annotations = map[string]string{"touched": strconvItoa(i)}
			return env.Client.Update(ctx, cur)
		}))
		require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Greater(c, reconcileCount(c), passes) }, timeout, tick)
	}
	// A status write while Ready stays True is no new Event either.
	createNamespace(t, "no-such-namespace", nil, "default")
	eventuallyStatus(t, "nothing", func(c *assert.CollectT, st tcrv1.ImagePullSecretStatus) {
		assert.Equal(c, [2]int32{1, 1}, [2]int32{st.SecretsSuccess, st.SAsSuccess})
		assert.Equal(c, metav1.ConditionTrue, readyStatus(st))
	})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ev := eventsFor(c, "nothing", tcrv1.ReasonDistributed)
		if assert.Len(c, ev, 1) {
			assert.Nil(c, ev[0].Series, "sent once")
			assert.Equal(c, "Normal", ev[0].Type)
			assert.Equal(c, "Secret tcr.ipsnothing is in 0 namespaces and referenced by 0 ServiceAccounts", ev[0].Note)
		}
	}, timeout, tick)
}
