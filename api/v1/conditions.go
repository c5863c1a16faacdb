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
