package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// stuckOn builds a Pending Pod whose one container waits with reason for image.
func stuckOn(name, image, reason string, edit ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID("uid-" + name),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-1", UID: "rs", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{ServiceAccountName: "builder", Containers: []corev1.Container{{Name: "app", Image: image}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}},
	}
	for _, e := range edit {
		e(p)
	}
	return p
}

func TestPlanRecovery(t *testing.T) {
	const secret, server = "tcr.ipsteam", "demo.tencentcloudcr.com"
	img := server + "/team/app:1"
	owned := func(kind string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.OwnerReferences[0].Kind = kind }
	}
	bare := func(p *corev1.Pod) { p.OwnerReferences = nil }
	notController := func(p *corev1.Pod) { p.OwnerReferences[0].Controller = nil }
	ownList := func(names ...string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			for _, n := range names {
				p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
			}
		}
	}
	initStuck := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: img}}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: reasonImagePullBackOff}}}}
		p.Spec.Containers[0].Image = "busybox"
		p.Status.ContainerStatuses[0].State.Waiting.Reason = "PodInitializing"
	}
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }

	for _, tc := range []struct {
		name                 string
		pod                  *corev1.Pod
		selected, referenced bool
		server               string // the rule's docker.server, server when empty
		evict                bool
		stuck                string // the reason it is reported with, "" for none
	}{
		{name: "owned by a ReplicaSet, ErrImagePull", pod: stuckOn("a", img, reasonErrImagePull), selected: true, referenced: true, evict: true},
		{name: "ImagePullBackOff", pod: stuckOn("a", img, reasonImagePullBackOff), selected: true, referenced: true, evict: true},
		{name: "StatefulSet", pod: stuckOn("a", img, reasonErrImagePull, owned("StatefulSet")), selected: true, referenced: true, evict: true},
		{name: "DaemonSet", pod: stuckOn("a", img, reasonErrImagePull, owned("DaemonSet")), selected: true, referenced: true, evict: true},
		{name: "Job", pod: stuckOn("a", img, reasonErrImagePull, owned("Job")), selected: true, referenced: true, evict: true},
		{name: "an init container", pod: stuckOn("a", img, reasonErrImagePull, initStuck), selected: true, referenced: true, evict: true},
		{name: "bare", pod: stuckOn("a", img, reasonErrImagePull, bare), selected: true, referenced: true, stuck: tcrv1.ReasonBarePod},
		{name: "an owner that is not its controller", pod: stuckOn("a", img, reasonErrImagePull, notController), selected: true, referenced: true, stuck: tcrv1.ReasonBarePod},
		{name: "a controller that recreates nothing", pod: stuckOn("a", img, reasonErrImagePull, owned("Node")), selected: true, referenced: true, stuck: tcrv1.ReasonBarePod},
		{name: "its own imagePullSecrets", pod: stuckOn("a", img, reasonErrImagePull, ownList("mine")), selected: true, referenced: true, stuck: tcrv1.ReasonOwnPullSecrets},
		{name: "bare with its own imagePullSecrets", pod: stuckOn("a", img, reasonErrImagePull, bare, ownList("mine")), selected: true, referenced: true, stuck: tcrv1.ReasonOwnPullSecrets},
		{name: "it lists the Secret: it fails for another reason", pod: stuckOn("a", img, reasonErrImagePull, ownList("mine", secret)), selected: true, referenced: true},
		{name: "another registry", pod: stuckOn("a", "other.tencentcloudcr.com/team/app:1", reasonErrImagePull), selected: true, referenced: true},
		{name: "another waiting reason", pod: stuckOn("a", img, "CrashLoopBackOff"), selected: true, referenced: true},
		{name: "not selected", pod: stuckOn("a", img, reasonErrImagePull), referenced: false},
		{name: "selected, not referenced yet", pod: stuckOn("a", img, reasonErrImagePull), selected: true},
		{name: "being deleted", pod: stuckOn("a", img, reasonErrImagePull, deleting), selected: true, referenced: true},
		{name: "Docker Hub, server index.docker.io", pod: stuckOn("a", "library/nginx", reasonErrImagePull), server: "https://index.docker.io/v1/",
			selected: true, referenced: true, evict: true},
		{name: "Docker Hub image, another server", pod: stuckOn("a", "nginx", reasonErrImagePull), selected: true, referenced: true},
		{name: "a host with a port and upper case", pod: stuckOn("a", "127.0.0.1:5000/app", reasonErrImagePull), server: "127.0.0.1:5000",
			selected: true, referenced: true, evict: true},
		{name: "a server with a scheme and upper case", pod: stuckOn("a", img, reasonErrImagePull), server: "HTTPS://Demo.TencentCloudCR.com",
			selected: true, referenced: true, evict: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.server
			if srv == "" {
				srv = server
			}
			pod := newSlimPod(tc.pod)
			p := planRecovery(secret, srv, []podFacts{{pod: pod, selected: tc.selected, referenced: tc.referenced}})
			if tc.evict {
				assert.Equal(t, []*slimPod{pod}, p.evict)
			} else {
				assert.Empty(t, p.evict)
			}
			if tc.stuck != "" {
				assert.Equal(t, []stuckPod{{pod: pod, reason: tc.stuck}}, p.stuck)
			} else {
				assert.Empty(t, p.stuck)
			}
		})
	}
}

func TestPlanRecoverySortsByNamespaceAndName(t *testing.T) {
	img := "demo.tencentcloudcr.com/app"
	var facts []podFacts
	for _, n := range []struct{ ns, name string }{{"b", "x"}, {"a", "y"}, {"a", "b"}} {
		p := stuckOn(n.name, img, reasonErrImagePull)
		p.Namespace = n.ns
		facts = append(facts, podFacts{pod: newSlimPod(p), selected: true, referenced: true})
	}
	p := planRecovery("tcr.ipsx", "demo.tencentcloudcr.com", facts)
	var got []string
	for _, e := range p.evict {
		got = append(got, e.key())
	}
	assert.Equal(t, []string{"a/b", "a/y", "b/x"}, got)
}

// TestSlimPodKeepsOnlyWhatRecoveryReads: the slim form holds the controller reference, the
// ServiceAccount ("default" when unset), the pull Secret names and the images of waiting
// containers, and none of the rest (labels, annotations, other owners, env, volumes).
func TestSlimPodKeepsOnlyWhatRecoveryReads(t *testing.T) {
	pod := stuckOn("a", "demo.tencentcloudcr.com/app", reasonErrImagePull, func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "x"}
		p.Annotations = map[string]string{"big": string(make([]byte, 4096))}
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{Kind: "Other", Name: "o"})
		p.Spec.ServiceAccountName = ""
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "running", Image: "demo.tencentcloudcr.com/ok",
			Env: []corev1.EnvVar{{Name: "A", Value: "b"}}})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: "running",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}}
	})
	s := newSlimPod(pod)
	assert.Equal(t, "default", s.serviceAccount)
	assert.Equal(t, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-1", UID: "rs"}, s.controller)
	assert.Equal(t, []string{"mine"}, s.pullSecrets)
	assert.Equal(t, []waitingImage{{image: "demo.tencentcloudcr.com/app", reason: reasonErrImagePull}}, s.waiting)
	assert.Nil(t, s.GetLabels())
	assert.Nil(t, s.GetAnnotations())
	assert.Nil(t, s.GetOwnerReferences())
	assert.Equal(t, types.UID("uid-a"), s.GetUID())
	c := s.DeepCopyObject().(*slimPod)
	assert.Equal(t, s, c)
	c.pullSecrets[0], c.controller.Name = "changed", "changed"
	assert.Equal(t, "mine", s.pullSecrets[0], "DeepCopyObject shares the pull Secrets")
	assert.Equal(t, "app-1", s.controller.Name, "DeepCopyObject shares the controller reference")
}
