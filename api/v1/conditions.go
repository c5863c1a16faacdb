package v1

// Condition types of an ImagePullSecret's status.
const (
	// ConditionReady summarises the ImagePullSecret: True when every target namespace holds the
	// up-to-date Secret and every target ServiceAccount references it.
	ConditionReady = "Ready"
	// ConditionValid says whether the spec is one the admission webhook accepts. A spec stored
	// before the webhook was installed, or while it was off, may not be; it keeps the original's
	// lenient behaviour and gets Valid=False with the webhook's messages.
	ConditionValid = "Valid"
	// ConditionCredentialVerified says what the registry made of the credential the last time the
	// controller logged in with it (GET https://<server>/v2/ and its Basic or Bearer challenge):
	// True (ReasonAccepted), False (ReasonRejected, also for a token past its expiry) or Unknown
	// (ReasonUnreachable, ReasonTLSError: the registry gave no answer about the credential). It
	// appears once the first check has ended; distribution never waits for it.
	ConditionCredentialVerified = "CredentialVerified"
	// ConditionCredentialExpiring is present when the password is a JWT with an expiry: True with
	// ReasonExpiresSoon when that is less than the controller's --credential-expiry-warning away,
	// True with ReasonExpired after it, False with ReasonExpiresLater before the warning.
	ConditionCredentialExpiring = "CredentialExpiring"
	// ConditionCredentialMinted is present on a rule with docker.instanceToken: True
	// (ReasonMinted) when the last call of the TCR API's CreateInstanceToken succeeded, False
	// when it failed, with the API's error code (its "." replaced by "_") as the reason and the
	// exact code and message of the API in the message. A failure leaves the distributed copies
	// as they are.
	ConditionCredentialMinted = "CredentialMinted"
	// ConditionTokenRevoked is present on a rule being deleted whose LongTerm instance token
	// could not be revoked yet: False, with the reason why. The finalizer stays until the token
	// is revoked, or until someone removes the finalizer by hand (README, "Instance tokens").
	ConditionTokenRevoked = "TokenRevoked"
)

// Reasons of the credential sources, the rotation hold and their Events.
const (
	// ReasonMinted: CredentialMinted=True.
	ReasonMinted = "Minted"
	// ReasonRotationHeld: Ready=False because the registry rejected the rule's new credential;
	// the last accepted one stays distributed until the new one is accepted (rotationPolicy
	// Verified). A Warning Event is sent when the hold starts.
	ReasonRotationHeld = "RotationHeld"
	// ReasonAPIKeySecretNotFound: the Secret named by docker.instanceToken.apiKeySecretRef does
	// not exist, or lacks the key SecretId or SecretKey.
	ReasonAPIKeySecretNotFound = "APIKeySecretNotFound"
	// ReasonCloudCredentialUnavailable: no docker.instanceToken.apiKeySecretRef, and the
	// manager's own cloud identity (TKE pod identity, the CVM role) gave no credential.
	ReasonCloudCredentialUnavailable = "CloudCredentialUnavailable"
)

// Reasons of the CredentialVerified and CredentialExpiring conditions and of their Events.
const (
	// ReasonAccepted: the registry let the credential in.
	ReasonAccepted = "Accepted"
	// ReasonRejected: the registry or its token service refused the credential, or the password
	// is a token whose expiry has passed (then the registry is not asked). A Warning Event is sent
	// when the condition turns Rejected.
	ReasonRejected = "Rejected"
	// ReasonUnreachable: no answer about the credential (connection refused, name not resolved,
	// timeout, an unexpected HTTP status). Proves nothing about the credential.
	ReasonUnreachable = "Unreachable"
	// ReasonTLSError: the registry's certificate is not trusted (see --registry-ca-file), so the
	// credential was not sent.
	ReasonTLSError = "TLSError"
	// ReasonExpiresSoon: the token expires within --credential-expiry-warning; a Warning Event is
	// sent when the condition turns so.
	ReasonExpiresSoon = "ExpiresSoon"
	// ReasonExpired: the token's expiry has passed.
	ReasonExpired = "Expired"
	// ReasonExpiresLater: the token expires later than --credential-expiry-warning from now.
	ReasonExpiresLater = "ExpiresLater"
)

// Reasons of the Ready condition, of status.failures and of Events.
const (
	// ReasonDistributed: Ready=True; also the reason of the Normal Event sent when Ready turns True.
	ReasonDistributed = "Distributed"
	// ReasonProgressing: Ready=False while targets are still being written.
	ReasonProgressing = "Progressing"
	// ReasonTargetsFailed: Ready=False because some targets failed (see status.failures).
	ReasonTargetsFailed = "TargetsFailed"
	// ReasonInvalidSpec: the spec cannot be compiled (Ready=False) or the webhook would refuse it
	// (Valid=False).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonValidSpec: Valid=True.
	ReasonValidSpec = "ValidSpec"
	// ReasonPasswordSecretNotFound: the Secret named by docker.passwordSecretRef does not exist.
	ReasonPasswordSecretNotFound = "PasswordSecretNotFound"
	// ReasonPasswordKeyNotFound: that Secret has no such key.
	ReasonPasswordKeyNotFound = "PasswordKeyNotFound"
	// ReasonPasswordSourceNotAllowed: that Secret may not be a password source (see
	// PasswordSourceAllowed); nothing is distributed from it, and copies already distributed keep
	// their last good value.
	ReasonPasswordSourceNotAllowed = "PasswordSourceNotAllowed"

	// ReasonSecretNotOwned: a Secret of the distributed name exists and is not ours; it is left
	// untouched and no ServiceAccount is pointed at it.
	ReasonSecretNotOwned = "SecretNotOwned"
	// ReasonWriteFailed: a write to a target failed; it is retried with backoff.
	ReasonWriteFailed = "WriteFailed"
	// ReasonRuleEvaluationFailed: a rule could not be evaluated for a target.
	ReasonRuleEvaluationFailed = "RuleEvaluationFailed"
)

// Reasons of the Events and status of recoverPods.
const (
	// ReasonPodRecovered (Normal, on the ImagePullSecret): a stuck Pod owned by a controller was
	// evicted so that its owner recreates it with the reference.
	ReasonPodRecovered = "PodRecovered"
	// ReasonPodStuck (Warning, on the Pod): a stuck Pod that recoverPods leaves alone.
	ReasonPodStuck = "PodStuck"
	// ReasonBarePod: the stuck Pod has no controller to recreate it.
	ReasonBarePod = "BarePod"
	// ReasonOwnPullSecrets: the stuck Pod lists imagePullSecrets of its own, and so does not
	// inherit its ServiceAccount's; a recreated Pod would be stuck the same way.
	ReasonOwnPullSecrets = "OwnPullSecrets"
)
