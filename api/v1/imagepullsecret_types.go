package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tcr-assistant/tcr-assistant/credprovider/wire"
)

// Names that users and other tools depend on (DESIGN.md §1 and §2).
const (
	// SecretNamePrefix is prepended, with no separator, to the CR name to name the distributed
	// Secret: CR "imagepullsecret-sample" distributes Secret "tcr.ipsimagepullsecret-sample".
	SecretNamePrefix = "tcr.ips"

	// MaxNameLength is the longest CR name whose Secret name (SecretNamePrefix + name) is still a
	// valid DNS-1123 subdomain of at most 253 characters.
	MaxNameLength = 253 - len(SecretNamePrefix)

	// ManagedByLabel marks every object this project creates; its value is ManagedByValue.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on objects this project creates.
	ManagedByValue = "tcr-assistant"
	// OwnerLabel names, on a distributed Secret, the ImagePullSecret it was made from.
	OwnerLabel = "tcr.tencentcloudcr.com/imagepullsecret"

	// Finalizer keeps a CR until the controller has removed every Secret and reference it made.
	Finalizer = "tcr.tencentcloudcr.com/cleanup"

	// MaxListLength is the longest namespaces, serviceAccounts or excludeNamespaces list, in
	// bytes: room for over 10,000 names, and a bound on what one CR makes the API server, the
	// webhook and the controller hold. The CRD schema and the webhook both enforce it.
	MaxListLength = 256 * 1024
)

// ImagePullSecretSpec says which registry credential to hand out and to whom.
//
// A namespace is a target when it matches namespaces, namespaceSelector and namespaceExpression
// and is not named in excludeNamespaces. A ServiceAccount is a target when its namespace is one
// and it matches serviceAccounts, serviceAccountSelector and serviceAccountExpression. Every field
// beyond the original's namespaces, serviceAccounts and docker is optional, and leaving it out
// gives the original behaviour.
type ImagePullSecretSpec struct {
	// Namespaces selects target namespaces by name: "*" or "" selects every namespace; otherwise a
	// comma-separated list of exact namespace names (spaces around names are ignored). Patterns
	// are not supported: use namespaceSelector or namespaceExpression for those.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	Namespaces string `json:"namespaces,omitempty"`

	// ServiceAccounts selects, in every target namespace, the ServiceAccounts whose
	// imagePullSecrets get the Secret: "*" or "" selects all of them; otherwise a comma-separated
	// list of exact ServiceAccount names (spaces around names are ignored).
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	ServiceAccounts string `json:"serviceAccounts,omitempty"`

	// Docker is the registry credential written into each distributed Secret.
	Docker DockerCredential `json:"docker"`

	// NamespaceSelector, when set, additionally requires target namespaces to carry matching
	// labels. An empty selector matches every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ExcludeNamespaces is a comma-separated list of namespace names that are never targets, even
	// when every other rule selects them.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	ExcludeNamespaces string `json:"excludeNamespaces,omitempty"`

	// NamespaceExpression, when set, is a CEL expression that must evaluate to true for a
	// namespace to be a target. It sees `namespace` with fields `name`, `labels` and
	// `annotations`, e.g. `namespace.name.startsWith("team-") &&
	// namespace.labels[?"env"].orValue("") != "dev"`.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	NamespaceExpression string `json:"namespaceExpression,omitempty"`

	// ServiceAccountSelector, when set, additionally requires target ServiceAccounts to carry
	// matching labels. An empty selector matches every ServiceAccount.
	// +optional
	ServiceAccountSelector *metav1.LabelSelector `json:"serviceAccountSelector,omitempty"`

	// ServiceAccountExpression, when set, is a CEL expression that must evaluate to true for a
	// ServiceAccount to be a target. It sees `namespace` (as in namespaceExpression) and
	// `serviceAccount` with fields `name`, `namespace`, `labels` and `annotations`.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	ServiceAccountExpression string `json:"serviceAccountExpression,omitempty"`

	// RecoverPods, when true, recovers the Pods stuck without this credential: a Pending Pod of
	// a selected namespace and ServiceAccount, with a container in ErrImagePull or
	// ImagePullBackOff on docker.server, that lacks the Secret its ServiceAccount now references.
	// Such a Pod owned by a controller (ReplicaSet, StatefulSet, DaemonSet, Job) is evicted
	// through the Eviction API, so that its owner recreates it with the reference; a bare Pod,
	// or one that lists its own imagePullSecrets, is only reported (status.stuckPods and a
	// PodStuck Event). Off by default: the manager then reads no Pod at all.
	// +optional
	RecoverPods bool `json:"recoverPods,omitempty"`

	// Delivery is how the credential reaches Pods: Secrets (the default and the original's way: a
	// Secret in each selected namespace, referenced by each selected ServiceAccount),
	// CredentialProvider (no Secret and no reference: the kubelet's credential provider plugin,
	// tcr-credential-provider, asks the manager with the Pod's ServiceAccount token; copies left
	// from before are removed) or Both (for a migration, or nodes not configured yet).
	// +optional
	Delivery Delivery `json:"delivery,omitempty"`

	// RotationPolicy is Verified (the default) or Immediate. Verified: when the credential of a
	// rule that distributed a working credential changes, the new one is checked against the
	// registry first; while the registry rejects it, the last accepted one stays distributed and
	// Ready is False with reason RotationHeld. Immediate distributes every change at once.
	// +optional
	RotationPolicy RotationPolicy `json:"rotationPolicy,omitempty"`
}

// DockerCredential is one registry login, rendered as a kubernetes.io/dockerconfigjson Secret:
// either username with password or passwordSecretRef, or instanceToken.
// +kubebuilder:validation:XValidation:rule="!(has(self.password) && size(self.password) > 0 && has(self.passwordSecretRef))",message="set either docker.password or docker.passwordSecretRef, not both"
// +kubebuilder:validation:XValidation:rule="has(self.instanceToken) || has(self.passwordSecretRef) || (has(self.password) && size(self.password.trim()) > 0)",message="docker.password is required and must not be only whitespace (or set docker.passwordSecretRef)"
// +kubebuilder:validation:XValidation:rule="has(self.instanceToken) || has(self.username)",message="docker.username is required (or set docker.instanceToken)"
// +kubebuilder:validation:XValidation:rule="!has(self.instanceToken) || !(has(self.username) || has(self.password) || has(self.passwordSecretRef))",message="set either docker.instanceToken or docker.username with docker.password or docker.passwordSecretRef, not both"
type DockerCredential struct {
	// Server is the registry host name, optionally with a port, e.g.
	// "fanjiankong-bj.tencentcloudcr.com" or "registry.example.com:5000". No scheme and no path.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="!self.contains('://')",message="docker.server must be a host name without a scheme such as https://"
	Server string `json:"server"`

	// Username is the registry user name; make sure it has pull access to the repositories used.
	// Leave it out when instanceToken is set.
	// +optional
	// +kubebuilder:validation:XValidation:rule="size(self.trim()) > 0",message="docker.username must not be empty"
	Username string `json:"username,omitempty"`

	// Password is the registry password or token for username. Changing it rotates every
	// distributed Secret in place. Leave it out when passwordSecretRef is set.
	// +optional
	Password string `json:"password,omitempty"`

	// PasswordSecretRef, instead of password, reads the password from a key of a Secret in the
	// controller's own namespace (tcr-assistant-system by default; never another namespace).
	// Changing that Secret rotates every distributed copy.
	// +optional
	PasswordSecretRef *SecretKeyReference `json:"passwordSecretRef,omitempty"`

	// InstanceToken, instead of username and password, has the controller mint a TCR instance
	// access token (the TCR API's CreateInstanceToken) and distribute it, refreshing it before it
	// expires. A LongTerm token is revoked when the rule is deleted.
	// +optional
	InstanceToken *InstanceToken `json:"instanceToken,omitempty"`
}

// InstanceTokenType is the kind of TCR instance token to mint.
// +kubebuilder:validation:Enum=Temporary;LongTerm
type InstanceTokenType string

const (
	// InstanceTokenTemporary is a token that lasts one hour; the controller mints a new one
	// before it expires. The default.
	InstanceTokenTemporary InstanceTokenType = "Temporary"
	// InstanceTokenLongTerm is a token that lasts until it is revoked; the controller revokes it
	// when the rule is deleted or names another instance or type.
	InstanceTokenLongTerm InstanceTokenType = "LongTerm"
)

// InstanceToken names the TCR instance whose access tokens the controller mints.
type InstanceToken struct {
	// RegistryID is the TCR instance ID, e.g. "tcr-xxxxxxxx".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9-]*$`
	RegistryID string `json:"registryId"`

	// Region is the region of the instance, e.g. "ap-guangzhou".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9-]*$`
	Region string `json:"region"`

	// Type is Temporary (the default: one hour, refreshed before it expires) or LongTerm
	// (revoked when the rule goes).
	// +optional
	Type InstanceTokenType `json:"type,omitempty"`

	// APIKeySecretRef names a Secret in the controller's namespace with the keys SecretId and
	// SecretKey (and Token, for temporary STS credentials) of a Tencent Cloud API key allowed to
	// call tcr:CreateInstanceToken. The Secret must carry the password-source label. Without it,
	// the manager uses its own cloud identity (TKE pod identity or the CVM role), and no API key
	// is stored in the cluster.
	// +optional
	APIKeySecretRef *SecretReference `json:"apiKeySecretRef,omitempty"`
}

// TokenType is the type of the token, with the empty value read as Temporary.
func (t *InstanceToken) TokenType() InstanceTokenType {
	if t.Type == "" {
		return InstanceTokenTemporary
	}
	return t.Type
}

// SecretReference names a Secret in the controller's own namespace.
type SecretReference struct {
	// Name is the name of the Secret, in the controller's own namespace.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// Delivery is how the credential of a rule reaches Pods.
// +kubebuilder:validation:Enum=Secrets;CredentialProvider;Both
type Delivery string

const (
	// DeliverySecrets distributes Secrets and references, as the original does. The default.
	DeliverySecrets Delivery = "Secrets"
	// DeliveryCredentialProvider serves the credential to the kubelet's credential provider
	// plugin only: no namespace holds a copy.
	DeliveryCredentialProvider Delivery = "CredentialProvider"
	// DeliveryBoth does both.
	DeliveryBoth Delivery = "Both"
)

// CredentialProviderAudience is the audience of the ServiceAccount tokens the kubelet hands the
// credential provider plugin, and the one the manager's credential endpoint accepts.
const CredentialProviderAudience = wire.Audience

// DeliversSecrets reports whether the rule distributes Secrets.
func (s *ImagePullSecretSpec) DeliversSecrets() bool { return s.Delivery != DeliveryCredentialProvider }

// ServesCredentialProvider reports whether the credential endpoint serves the rule.
func (s *ImagePullSecretSpec) ServesCredentialProvider() bool {
	return s.Delivery == DeliveryCredentialProvider || s.Delivery == DeliveryBoth
}

// RotationPolicy says what happens when the credential of a rule changes.
// +kubebuilder:validation:Enum=Verified;Immediate
type RotationPolicy string

const (
	// RotationVerified checks a new credential against the registry before distributing it, and
	// keeps distributing the last accepted one while the registry rejects the new one. The
	// default.
	RotationVerified RotationPolicy = "Verified"
	// RotationImmediate distributes a new credential at once, as the original add-on does.
	RotationImmediate RotationPolicy = "Immediate"
)

// SecretKeyReference names one key of a Secret in the controller's own namespace.
type SecretKeyReference struct {
	// Name is the name of the Secret, in the controller's own namespace.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Key is the key within the Secret's data that holds the password.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ImagePullSecretStatus reports how far distribution got. Counters are exact; lists are sorted
// and capped (the controller's --status-list-limit) so the object stays small at any scale.
type ImagePullSecretStatus struct {
	// SecretsDesired is the number of matching, non-terminating namespaces.
	SecretsDesired int32 `json:"secretsDesired"`

	// SecretsSuccess is the number of those namespaces holding an up-to-date Secret of this CR.
	SecretsSuccess int32 `json:"secretsSuccess"`

	// SAsDesired is the number of matching ServiceAccounts in matching namespaces.
	SAsDesired int32 `json:"sAsDesired"`

	// SAsSuccess is the number of those ServiceAccounts whose imagePullSecrets reference the
	// Secret.
	SAsSuccess int32 `json:"sAsSuccess"`

	// SecretUpdateSuccessful lists distributed Secrets ("namespace/name") and when each was last
	// written, sorted by name and capped.
	// +optional
	// +listType=atomic
	SecretUpdateSuccessful []TargetUpdate `json:"secretUpdateSuccessful,omitempty"`

	// ServiceAccountsModifySuccessful lists ServiceAccounts ("namespace/name") that reference the
	// Secret and when the reference was added, sorted by name and capped.
	// +optional
	// +listType=atomic
	ServiceAccountsModifySuccessful []TargetUpdate `json:"serviceAccountsModifySuccessful,omitempty"`

	// Failures lists targets the controller could not bring up to date and why, sorted by name
	// and capped.
	// +optional
	// +listType=atomic
	Failures []TargetFailure `json:"failures,omitempty"`

	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// CredentialExpiresAt is the expiry ("exp" claim) of the password when it is a JWT, read
	// from the token without checking its signature; absent for other passwords.
	// +optional
	CredentialExpiresAt *metav1.Time `json:"credentialExpiresAt,omitempty"`

	// ServiceAccountsServed counts the ServiceAccounts the credential endpoint served this rule's
	// credential to (delivery CredentialProvider or Both) since the manager started.
	// +optional
	ServiceAccountsServed int32 `json:"serviceAccountsServed,omitempty"`

	// InstanceTokenID is the ID of the LongTerm instance token the controller minted for this
	// rule, which it revokes when the rule goes.
	// +optional
	InstanceTokenID string `json:"instanceTokenId,omitempty"`

	// PodsRecovered counts the Pods this rule has evicted (recoverPods) since it was created.
	// +optional
	PodsRecovered int64 `json:"podsRecovered,omitempty"`

	// PodsStuck counts the Pods stuck now without this credential that recoverPods leaves alone:
	// bare Pods, and Pods with imagePullSecrets of their own.
	// +optional
	PodsStuck int32 `json:"podsStuck,omitempty"`

	// StuckPods lists those Pods and why each is left alone, sorted by name and capped.
	// +optional
	// +listType=atomic
	StuckPods []StuckPod `json:"stuckPods,omitempty"`

	// Conditions summarise the state; Ready is True when every target is up to date.
	// CredentialVerified and CredentialExpiring report the registry's verdict on the credential.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// StuckPod is a Pod stuck without the credential that recoverPods does not evict.
type StuckPod struct {
	// NamespacedName is the Pod as "namespace/name".
	NamespacedName string `json:"namespacedName"`

	// Reason is BarePod (no controller would recreate it) or OwnPullSecrets (it lists its own
	// imagePullSecrets, so a recreated Pod would not get the ServiceAccount's either).
	Reason string `json:"reason"`
}

// TargetUpdate records one successfully updated target.
type TargetUpdate struct {
	// NamespacedName is the target as "namespace/name".
	NamespacedName string `json:"namespacedName"`

	// UpdatedAt is when the controller last wrote the target.
	UpdatedAt metav1.Time `json:"updatedAt"`
}

// TargetFailure records one target the controller could not bring up to date.
type TargetFailure struct {
	// Kind is the kind of the target: Secret or ServiceAccount.
	Kind string `json:"kind"`

	// NamespacedName is the target as "namespace/name".
	NamespacedName string `json:"namespacedName"`

	// Reason is a CamelCase word for the failure, e.g. SecretNotOwned.
	Reason string `json:"reason"`

	// Message says what went wrong and what to do about it.
	Message string `json:"message"`
}

// ImagePullSecret distributes one registry credential as a kubernetes.io/dockerconfigjson Secret
// named "tcr.ips<name>" to every matching namespace, and adds it to the imagePullSecrets of every
// matching ServiceAccount there.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ips;ipss
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaces`
// +kubebuilder:printcolumn:name="Service-Accounts",type=string,JSONPath=`.spec.serviceAccounts`
// +kubebuilder:printcolumn:name="Secrets-Desired",type=integer,JSONPath=`.status.secretsDesired`
// +kubebuilder:printcolumn:name="Secrets-Success",type=integer,JSONPath=`.status.secretsSuccess`
// +kubebuilder:printcolumn:name="SAs-Desired",type=integer,JSONPath=`.status.sAsDesired`,priority=1
// +kubebuilder:printcolumn:name="SAs-Success",type=integer,JSONPath=`.status.sAsSuccess`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Credential",type=string,JSONPath=`.status.conditions[?(@.type=="CredentialVerified")].reason`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.credentialExpiresAt`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`,priority=1
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 246",message="metadata.name must be at most 246 characters: the distributed Secret is named 'tcr.ips' + name, and Secret names are limited to 253 characters"
type ImagePullSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which credential to distribute and to which namespaces and ServiceAccounts.
	Spec ImagePullSecretSpec `json:"spec"`

	// Status reports the distribution as last observed by the controller.
	// +optional
	Status ImagePullSecretStatus `json:"status,omitempty"`
}

// SecretName is the name of the Secret distributed for this ImagePullSecret.
func (in *ImagePullSecret) SecretName() string { return SecretNamePrefix + in.Name }

// ImagePullSecretList is a list of ImagePullSecrets.
// +kubebuilder:object:root=true
type ImagePullSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImagePullSecret `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ImagePullSecret{}, &ImagePullSecretList{})
}
