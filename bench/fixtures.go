package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// ServiceAccountNames are the ServiceAccounts every benchmark namespace holds.
var ServiceAccountNames = []string{"default", "builder", "deployer"}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// createNamespaces creates the namespaces and their ServiceAccounts and returns the
// ServiceAccounts' resourceVersions by "namespace/name", for guarded patches.
func createNamespaces(ctx context.Context, kube kubernetes.Interface, workers int, names []string) (map[string]string, error) {
	var mu sync.Mutex
	rvs := make(map[string]string, len(names)*len(ServiceAccountNames))
	err := parallel(ctx, workers, len(names), func(ctx context.Context, i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: names[i]}}
		if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", names[i], err)
		}
		for _, n := range ServiceAccountNames {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: names[i]}}
			got, err := kube.CoreV1().ServiceAccounts(names[i]).Create(ctx, sa, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("creating ServiceAccount %s/%s: %w", names[i], n, err)
			}
			mu.Lock()
			rvs[names[i]+"/"+n] = got.ResourceVersion
			mu.Unlock()
		}
		return nil
	})
	return rvs, err
}

// createUnrelatedSecrets creates count Opaque Secrets of size bytes each, spread round-robin
// over namespaces: the objects a controller must not cache.
func createUnrelatedSecrets(ctx context.Context, kube kubernetes.Interface, workers, count, size int, namespaces []string) error {
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		return err
	}
	return parallel(ctx, workers, count, func(ctx context.Context, i int) error {
		ns := namespaces[i%len(namespaces)]
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%06d", i), Namespace: ns},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"blob": payload},
		}
		if _, err := kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating unrelated Secret %s/%s: %w", ns, s.Name, err)
		}
		return nil
	})
}

// dockerConfigJSON renders c the way `kubectl create secret docker-registry` does.
func dockerConfigJSON(c credential) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))
	data, _ := json.Marshal(map[string]any{"auths": map[string]any{c.Server: map[string]string{
		"username": c.Username, "password": c.Password, "auth": auth}}})
	return data
}

// floorDistribute is the floor: exactly one Secret create and one guarded ServiceAccount patch
// per ServiceAccount in each namespace, from workers goroutines with no client rate limit.
func floorDistribute(ctx context.Context, kube kubernetes.Interface, workers int, crName string, c credential, names []string, rvs map[string]string) error {
	secretName := tcrv1.SecretNamePrefix + crName
	data := dockerConfigJSON(c)
	return parallel(ctx, workers, len(names), func(ctx context.Context, i int) error {
		ns := names[i]
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: ns, Labels: map[string]string{
				tcrv1.ManagedByLabel: tcrv1.ManagedByValue, tcrv1.OwnerLabel: crName}},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
		}
		if _, err := kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("floor: creating Secret %s/%s: %w", ns, secretName, err)
		}
		for _, sa := range ServiceAccountNames {
			patch, _ := json.Marshal(map[string]any{
				"metadata":         map[string]string{"resourceVersion": rvs[ns+"/"+sa]},
				"imagePullSecrets": []map[string]string{{"name": secretName}},
			})
			if _, err := kube.CoreV1().ServiceAccounts(ns).Patch(ctx, sa, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("floor: patching ServiceAccount %s/%s: %w", ns, sa, err)
			}
		}
		return nil
	})
}

// floorRotate is the floor of a rotation: one patch of each distributed Secret's data.
func floorRotate(ctx context.Context, kube kubernetes.Interface, workers int, crName string, c credential, names []string) error {
	secretName := tcrv1.SecretNamePrefix + crName
	patch, _ := json.Marshal(map[string]any{"data": map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(c)}})
	return parallel(ctx, workers, len(names), func(ctx context.Context, i int) error {
		if _, err := kube.CoreV1().Secrets(names[i]).Patch(ctx, secretName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("floor: rotating Secret %s/%s: %w", names[i], secretName, err)
		}
		return nil
	})
}
