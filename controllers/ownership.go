package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
)

// owner names the ImagePullSecret a pass works for: the name and the UID of one incarnation.
type owner struct {
	name string
	uid  types.UID
}

func ownerOf(ips *tcrv1.ImagePullSecret) owner { return owner{name: ips.Name, uid: ips.UID} }

// secretName is the name of the distributed Secret, tcr.ips<name>.
func (o owner) secretName() string { return tcrv1.SecretNamePrefix + o.name }

// owned is the one ownership rule (docs/design.md, "Ownership"): s is the Secret of o when all
// three hold:
//   - its name is tcr.ips<name>;
//   - it carries the managed-by label and the owner label of o;
//   - it has a controller ownerReference to an ImagePullSecret with o's UID.
//
// Every delete and every patch of a Secret goes through it, and so does the removal of a
// ServiceAccount reference (which needs the Secret to be ours or gone). A Secret that fails it is
// foreign: reported, never written. A Secret of an earlier ImagePullSecret of the same name (its
// UID differs) is foreign too; the garbage collector removes it, as its owner is gone.
func owned(s metav1.Object, o owner) bool {
	if s.GetName() != o.secretName() {
		return false
	}
	l := s.GetLabels()
	if l[tcrv1.ManagedByLabel] != tcrv1.ManagedByValue || l[tcrv1.OwnerLabel] != OwnerLabelValue(o.name) {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(s)
	return ref != nil && ref.UID == o.uid && ref.Kind == "ImagePullSecret" &&
		ref.APIVersion == tcrv1.GroupVersion.String() && ref.Name == o.name
}

// adoptionCandidate reports whether s could be a Secret the original TCR Assistant left: a pull
// Secret named tcr.ips* that no controller owns. Only of those does the cache keep the logins
// that adoptable compares.
func adoptionCandidate(s *corev1.Secret) bool {
	return strings.HasPrefix(s.Name, tcrv1.SecretNamePrefix) && s.Type == corev1.SecretTypeDockerConfigJson &&
		metav1.GetControllerOfNoCopy(s) == nil
}

// adoptable is the adoption rule (docs/design.md, "Ownership"): a Secret that is not ours is
// taken over by o when it is what the original TCR Assistant left for the same ImagePullSecret:
//   - its name is tcr.ips<name> and it is not being deleted;
//   - its type is kubernetes.io/dockerconfigjson;
//   - it has no controller ownerReference at all (a Secret something else controls stays
//     foreign, and so does one of an earlier ImagePullSecret of the same name);
//   - it carries no managed-by label but ours (a Secret another tool manages stays foreign), and
//     when it carries ours or an owner label, that label names o;
//   - its .dockerconfigjson logs login.username in to login.server.
//
// plan adopts it only in a namespace that matches, and only when no ServiceAccount would lose
// its reference.
func adoptable(s *slimSecret, o owner, login registryLogin) bool {
	if s.name != o.secretName() || s.deletionTimestamp != nil || s.secretType != corev1.SecretTypeDockerConfigJson ||
		metav1.GetControllerOfNoCopy(s) != nil {
		return false
	}
	managedBy, managed := s.labels[tcrv1.ManagedByLabel]
	_, hasOwner := s.labels[tcrv1.OwnerLabel]
	if managed && managedBy != tcrv1.ManagedByValue || (managed || hasOwner) && s.labels[tcrv1.OwnerLabel] != OwnerLabelValue(o.name) {
		return false
	}
	return login.server != "" && slices.Contains(s.logins, login)
}

// claimedOwner returns the owner a distributed Secret names in its controller reference, or
// false when it names none. It is for routing events and for the Secrets of an ImagePullSecret
// that no longer exists; whether the Secret is really that owner's is still decided by owned.
func claimedOwner(s metav1.Object) (owner, bool) {
	if s.GetLabels()[tcrv1.ManagedByLabel] != tcrv1.ManagedByValue {
		return owner{}, false
	}
	ref := metav1.GetControllerOfNoCopy(s)
	if ref == nil || ref.Kind != "ImagePullSecret" || ref.APIVersion != tcrv1.GroupVersion.String() {
		return owner{}, false
	}
	return owner{name: ref.Name, uid: ref.UID}, true
}

// controllerRef is the controller ownerReference of the Secrets of o.
func controllerRef(o owner) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: tcrv1.GroupVersion.String(), Kind: "ImagePullSecret", Name: o.name, UID: o.uid,
		Controller: &yes, BlockOwnerDeletion: &yes,
	}
}

// maxLabelValue is the longest label value Kubernetes accepts.
const maxLabelValue = 63

// OwnerLabelValue is the value of OwnerLabel on the Secrets of the ImagePullSecret name: the name
// itself, or, for names longer than a label value may be (CR names go up to 246 characters), its
// first 52 characters, a dash and 10 hex digits of its SHA-256. Two long names may share a value;
// the controller reference's UID tells their Secrets apart.
func OwnerLabelValue(name string) string {
	if len(name) <= maxLabelValue {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxLabelValue-11] + "-" + hex.EncodeToString(sum[:])[:10]
}
