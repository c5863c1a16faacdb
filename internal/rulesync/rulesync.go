// Package rulesync applies the ImagePullSecrets of a Helm release (the chart's
// global.imagePullSecretsCrs) from a hook Job. Helm cannot create them itself: the webhook fails
// closed, so an ImagePullSecret is refused until the manager serves, and Helm creates a release's
// objects in one go and never retries. The hook runs after the release's objects exist and
// retries while the webhook cannot be reached; a rule the webhook refuses fails at once, with the
// webhook's message.
package rulesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// InstanceLabel marks an ImagePullSecret with the Helm release that declared it, so that an
// upgrade deletes the ones the values no longer list and leaves every other one alone.
const InstanceLabel = "app.kubernetes.io/instance"

// RetryInterval is how long Apply and DeleteAll wait between two attempts.
const RetryInterval = time.Second

// Parse reads a JSON or YAML list of ImagePullSecrets, as the chart's hook Secret holds them.
func Parse(data []byte) ([]tcrv1.ImagePullSecret, error) {
	var rules []tcrv1.ImagePullSecret
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		return nil, fmt.Errorf("parsing the ImagePullSecrets: %w", err)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Name == "" {
			return nil, errors.New("parsing the ImagePullSecrets: an entry has no name")
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("parsing the ImagePullSecrets: %q is listed twice", r.Name)
		}
		seen[r.Name] = true
	}
	return rules, nil
}

// Apply creates or updates every rule, labelled with instance, then deletes the ImagePullSecrets
// labelled with instance that rules no longer lists. An existing ImagePullSecret of the same name
// is taken over unless another release declared it. An update changes the object in place, so a
// new password rotates every distributed copy without deleting any.
func Apply(ctx context.Context, c client.Client, instance string, rules []tcrv1.ImagePullSecret, log io.Writer) error {
	want := map[string]bool{}
	for i := range rules {
		r := rules[i].DeepCopy()
		want[r.Name] = true
		if err := retry(ctx, log, "applying ImagePullSecret "+r.Name, func() error { return applyOne(ctx, c, instance, r) }); err != nil {
			return err
		}
		fmt.Fprintf(log, "Applied ImagePullSecret %s\n", r.Name)
	}
	var list tcrv1.ImagePullSecretList
	if err := retry(ctx, log, "listing the release's ImagePullSecrets", func() error {
		return c.List(ctx, &list, client.MatchingLabels{InstanceLabel: instance})
	}); err != nil {
		return err
	}
	for i := range list.Items {
		old := &list.Items[i]
		if want[old.Name] {
			continue
		}
		if err := retry(ctx, log, "deleting ImagePullSecret "+old.Name, func() error {
			return client.IgnoreNotFound(c.Delete(ctx, old))
		}); err != nil {
			return err
		}
		fmt.Fprintf(log, "Deleted ImagePullSecret %s, which the values no longer list\n", old.Name)
	}
	return nil
}

func applyOne(ctx context.Context, c client.Client, instance string, r *tcrv1.ImagePullSecret) error {
	var live tcrv1.ImagePullSecret
	err := c.Get(ctx, client.ObjectKeyFromObject(r), &live)
	if apierrors.IsNotFound(err) {
		obj := &tcrv1.ImagePullSecret{}
		obj.Name, obj.Spec = r.Name, r.Spec
		obj.Labels = mergeLabels(r.Labels, instance)
		return c.Create(ctx, obj)
	}
	if err != nil {
		return err
	}
	if owner, ok := live.Labels[InstanceLabel]; ok && owner != instance {
		return permanent{fmt.Errorf("ImagePullSecret %s belongs to release %q, not %q: rename it in the values or remove it from the other release", r.Name, owner, instance)}
	}
	live.Spec = r.Spec
	for k, v := range mergeLabels(r.Labels, instance) {
		if live.Labels == nil {
			live.Labels = map[string]string{}
		}
		live.Labels[k] = v
	}
	// Guarded by resourceVersion: a conflict is retried on a fresh read.
	return c.Update(ctx, &live)
}

func mergeLabels(labels map[string]string, instance string) map[string]string {
	out := map[string]string{InstanceLabel: instance}
	for k, v := range labels {
		out[k] = v
	}
	out[InstanceLabel] = instance
	return out
}

// DeleteAll deletes every ImagePullSecret and waits until they are gone, that is until the
// manager, which still runs, has removed each one's Secrets and ServiceAccount references and
// its finalizer. The chart's pre-delete hook runs it: the CRD goes with the release, and the
// manager with it, so any rule left would stay terminating forever.
func DeleteAll(ctx context.Context, c client.Client, log io.Writer) error {
	return retry(ctx, log, "deleting every ImagePullSecret", func() error {
		var list tcrv1.ImagePullSecretList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return nil
		}
		for i := range list.Items {
			if list.Items[i].DeletionTimestamp == nil {
				if err := client.IgnoreNotFound(c.Delete(ctx, &list.Items[i])); err != nil {
					return err
				}
				fmt.Fprintf(log, "Deleted ImagePullSecret %s\n", list.Items[i].Name)
			}
		}
		return fmt.Errorf("%d ImagePullSecrets are still being cleaned up by the manager", len(list.Items))
	})
}

// permanent wraps an error that no retry can fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry runs f until it succeeds, fails for good or ctx ends. Refusals (the webhook's denial,
// invalid objects, missing permissions) fail for good; anything else, above all the webhook not
// answering yet, is retried.
func retry(ctx context.Context, log io.Writer, what string, f func() error) error {
	var last string
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) || apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) ||
			apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if msg := err.Error(); msg != last {
			fmt.Fprintf(log, "Retrying %s: %v\n", what, err)
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up: %w (last error: %w)", what, ctx.Err(), err)
		case <-time.After(RetryInterval):
		}
	}
}
