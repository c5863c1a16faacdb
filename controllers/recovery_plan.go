package controllers

import (
	"cmp"
	"slices"
	"strings"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// Pod recovery (recoverPods) is a plan, apply and record of its own (recovery.go), beside the
// distribution's: planRecovery below decides, from a slim form of each Pending Pod and what the
// last namespace pass found, which Pods are stuck without the rule's credential and which of
// them to evict. It is pure: the tests give it Pods and facts, no API server.

// Waiting reasons of a container whose image could not be pulled.
const (
	reasonErrImagePull     = "ErrImagePull"
	reasonImagePullBackOff = "ImagePullBackOff"
)

// recoverable are the controller kinds whose Pods come back when evicted.
var recoverable = []string{"ReplicaSet", "StatefulSet", "DaemonSet", "Job"}

// podFacts is one Pending Pod and what the rule's last namespace pass found for it.
type podFacts struct {
	pod *slimPod
	// selected: the rule selects the Pod's namespace and ServiceAccount.
	selected bool
	// referenced: the Pod's ServiceAccount references the rule's Secret, and the Secret is up to
	// date in the namespace: a Pod created now would pull.
	referenced bool
}

// recoveryPlan is what recovery does for one rule.
type recoveryPlan struct {
	// evict are the stuck Pods owned by a controller, sorted by namespace and name.
	evict []*slimPod
	// stuck are the stuck Pods left alone, sorted by namespace and name.
	stuck []stuckPod
}

type stuckPod struct {
	pod    *slimPod
	reason string // tcrv1.ReasonBarePod or tcrv1.ReasonOwnPullSecrets
}

// planRecovery plans recovery for the rule whose Secret is secretName and whose registry is
// server. A Pod is stuck when the rule selects it, a container or init container of it waits in
// ErrImagePull or ImagePullBackOff for an image on server, it does not list secretName, and its
// ServiceAccount now references the Secret. A Pod that lists secretName already fails for
// another reason and is never touched.
func planRecovery(secretName, server string, pods []podFacts) recoveryPlan {
	var p recoveryPlan
	host := registryHost(server)
	for _, f := range pods {
		pod := f.pod
		if !f.selected || !f.referenced || pod.deletionTimestamp != nil || slices.Contains(pod.pullSecrets, secretName) ||
			!pod.pullFailsOn(host) {
			continue
		}
		switch {
		case len(pod.pullSecrets) > 0:
			p.stuck = append(p.stuck, stuckPod{pod: pod, reason: tcrv1.ReasonOwnPullSecrets})
		case pod.controller == nil || !slices.Contains(recoverable, pod.controller.Kind):
			p.stuck = append(p.stuck, stuckPod{pod: pod, reason: tcrv1.ReasonBarePod})
		default:
			p.evict = append(p.evict, pod)
		}
	}
	slices.SortFunc(p.evict, comparePods)
	slices.SortFunc(p.stuck, func(a, b stuckPod) int { return comparePods(a.pod, b.pod) })
	return p
}

func comparePods(a, b *slimPod) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
}

// registryHost is the registry host of a docker.server, as the container runtime names it:
// lower case, without a scheme or path, Docker Hub's aliases as docker.io.
func registryHost(server string) string {
	h := strings.ToLower(server)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return h
}

// imageHost is the registry host of an image reference, "docker.io" for one without a host; ""
// when the reference does not parse.
func imageHost(image string) string {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return ""
	}
	return strings.ToLower(reference.Domain(named))
}

// slimPod is a Pending Pod as recovery keeps it: what planRecovery reads, nothing else.
type slimPod struct {
	slimMeta
	controller     *metav1.OwnerReference // its controller reference, nil for a bare Pod
	serviceAccount string
	pullSecrets    []string
	// waiting are the images of its containers and init containers that wait with a reason.
	waiting []waitingImage
}

type waitingImage struct{ image, reason string }

// pullFailsOn tells whether a container of the Pod waits because its image on host could not
// be pulled.
func (p *slimPod) pullFailsOn(host string) bool {
	return slices.ContainsFunc(p.waiting, func(w waitingImage) bool {
		return (w.reason == reasonErrImagePull || w.reason == reasonImagePullBackOff) && imageHost(w.image) == host
	})
}

// newSlimPod keeps of pod what recovery reads.
func newSlimPod(pod *corev1.Pod) *slimPod {
	meta := pod.ObjectMeta
	meta.Labels, meta.Annotations, meta.OwnerReferences = nil, nil, nil
	p := &slimPod{slimMeta: newSlimMeta(&meta), serviceAccount: pod.Spec.ServiceAccountName}
	if p.serviceAccount == "" {
		p.serviceAccount = "default"
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		p.controller = &metav1.OwnerReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		p.pullSecrets = append(p.pullSecrets, s.Name)
	}
	images := map[string]string{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		images[c.Name] = c.Image
	}
	for _, s := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		if w := s.State.Waiting; w != nil && w.Reason != "" {
			p.waiting = append(p.waiting, waitingImage{image: images[s.Name], reason: w.Reason})
		}
	}
	return p
}

// DeepCopyObject implements runtime.Object.
func (p *slimPod) DeepCopyObject() runtime.Object {
	c := *p
	c.slimMeta = p.deepCopy()
	if p.controller != nil {
		ref := *p.controller
		c.controller = &ref
	}
	c.pullSecrets = slices.Clone(p.pullSecrets)
	c.waiting = slices.Clone(p.waiting)
	return &c
}

// ref is the Pod as an object Events can be about.
func (p *slimPod) ref() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, UID: p.uid}}
}

// key is the Pod as "namespace/name".
func (p *slimPod) key() string { return p.namespace + "/" + p.name }
