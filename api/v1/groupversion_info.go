// Package v1 contains the ImagePullSecret API of group tcr.tencentcloudcr.com, version v1: the
// names and fields users of the original TCR Assistant depend on, plus optional extensions whose
// absence means the original behaviour.
// +kubebuilder:object:generate=true
// +groupName=tcr.tencentcloudcr.com
package v1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "tcr.tencentcloudcr.com", Version: "v1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
