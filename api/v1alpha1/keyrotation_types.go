/*
Copyright 2026 The rekey Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Annotations a user puts on the Secrets a KeyRotation works on, and the one
// the controller writes.
const (
	// EncryptedKeysAnnotation lists the Secret data keys that hold ciphertext
	// blobs, comma-separated; "*" means every data key.
	EncryptedKeysAnnotation = "rekey.dev/encrypted-keys"
	// EncryptionContextAnnotation optionally holds a JSON object used as the
	// encryption context of every blob in the Secret.
	EncryptionContextAnnotation = "rekey.dev/encryption-context"
	// RotatedByAnnotation is written by the controller on each Secret it
	// rotates: "UID/RUN", the KeyRotation's UID and the id of the run that
	// wrote it. It counts only while RotatedDigestAnnotation matches the
	// Secret's values.
	RotatedByAnnotation = "rekey.dev/rotated-by"
	// RotatedDigestAnnotation is written beside RotatedByAnnotation: a
	// SHA-256 digest of the destination key, the destination encryption
	// context and the values written. A Secret whose values changed since
	// (an app, a GitOps re-apply) no longer matches, and its mark is ignored.
	RotatedDigestAnnotation = "rekey.dev/rotated-digest"
	// RotatedBlobsAnnotation records how many blobs of the Secret the run
	// re-encrypted, so a resumed run counts them exactly once.
	RotatedBlobsAnnotation = "rekey.dev/rotated-blobs"
	// RequestedAtAnnotation on a KeyRotation: a new value starts a new run
	// of a finished rotation (as Flux's reconcile.fluxcd.io/requestedAt),
	// for example `kubectl annotate keyrotation NAME rekey.dev/requested-at="$(date +%s)" --overwrite`.
	RequestedAtAnnotation = "rekey.dev/requested-at"
	// AWSCredentialsSecretType is the type a Secret must have for a
	// KeyRotation's spec.provider.aws.credentialsSecretRef to use it.
	AWSCredentialsSecretType = "rekey.dev/aws-credentials"
	// KeyNamespacesTag is the key tag that says which namespaces' KeyRotations
	// may use the key: comma-separated namespace names, or "*" for all.
	KeyNamespacesTag = "rekey.dev/namespaces"
)

// KeyRotationSpec says which blobs move from which keys to which key. Its
// fields follow the AWS KMS ReEncrypt request.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.sourceKeyIds) || self.sourceKeyIds == oldSelf.sourceKeyIds",message="sourceKeyIds is immutable once set"
// +kubebuilder:validation:XValidation:rule="self.destinationKeyId == oldSelf.destinationKeyId",message="destinationKeyId is immutable once set"
type KeyRotationSpec struct {
	// SourceKeyIDs lists the keys the blobs may be under now (key id, key ARN,
	// alias name or alias ARN). Every SourceKeyId that ReEncrypt returns must
	// be one of them, or the blob fails. When exactly one is given it is also
	// sent as ReEncrypt's SourceKeyId. Naming the destination key itself moves
	// blobs from older backing-key versions to its current one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=2048
	// +listType=set
	SourceKeyIDs []string `json:"sourceKeyIds"`

	// DestinationKeyID is the key the blobs are re-encrypted under.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	DestinationKeyID string `json:"destinationKeyId"`

	// SourceEncryptionContext is the encryption context the blobs were
	// encrypted with. When empty, the Secret's rekey.dev/encryption-context
	// annotation is used, if any. Values may hold {namespace}, {name} and
	// {key}: each blob's Secret namespace, Secret name and data key.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) > 0)",message="encryption context keys must not be empty"
	SourceEncryptionContext map[string]string `json:"sourceEncryptionContext,omitempty"`

	// DestinationEncryptionContext is the encryption context of the new
	// blobs. When empty, the source context is kept. Values may hold
	// {namespace}, {name} and {key}, which bind each blob to its Secret and
	// data key (a blob copied elsewhere then no longer decrypts).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) > 0)",message="encryption context keys must not be empty"
	DestinationEncryptionContext map[string]string `json:"destinationEncryptionContext,omitempty"`

	// GrantTokens are passed on every ReEncrypt call.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=8192
	GrantTokens []string `json:"grantTokens,omitempty"`

	// SecretSelector narrows the annotated Secrets of the namespace to those
	// whose labels match. Empty means every annotated Secret.
	// +optional
	SecretSelector *metav1.LabelSelector `json:"secretSelector,omitempty"`

	// Provider is the key service that performs ReEncrypt.
	// +optional
	// +kubebuilder:default={embedded: {}}
	Provider *ProviderSpec `json:"provider,omitempty"`

	// DryRun plans the rotation without writing any Secret: status counts
	// what would be rotated (wouldRotate), and DryRun calls to the key
	// service prove the re-encryption is allowed.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// GitOps says what becomes of a selected Secret that Argo CD or Flux
	// applies from Git (it carries their tracking annotation or labels:
	// argocd.argoproj.io/tracking-id, argocd.argoproj.io/instance,
	// kustomize.toolkit.fluxcd.io/name, helm.toolkit.fluxcd.io/name) and
	// has blobs to move. Report (the default, also when empty) leaves it
	// unwritten — the next sync would write the old blobs back — and fails
	// it with reason ManagedByGitOps: re-encrypt its manifest in Git with
	// `rekey manifests reencrypt`. Rotate writes it like any other Secret,
	// for those who write the result back to Git themselves.
	// +optional
	// +kubebuilder:validation:Enum=Report;Rotate
	GitOps GitOpsPolicy `json:"gitOps,omitempty"`

	// VerifyInterval is how often a finished rotation reads its Secrets
	// again (read-only: no write, and no key service call where blob headers
	// can be read) and turns SourceKeysDrained False when a blob under a
	// source key appears again. 0s turns re-verification off.
	// +optional
	// +kubebuilder:default="1h"
	VerifyInterval *metav1.Duration `json:"verifyInterval,omitempty"`

	// MaxConcurrency bounds how many Secrets are re-encrypted at once.
	// +optional
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`

	// Paused stops work after the Secrets in flight; clearing it resumes.
	// Neither paused nor maxConcurrency starts a new run: any other change
	// to the spec restarts the run from the first Secret.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// ProviderSpec selects exactly one key service.
// +kubebuilder:validation:XValidation:rule="(has(self.embedded) ? 1 : 0) + (has(self.aws) ? 1 : 0) == 1",message="exactly one of provider.embedded or provider.aws must be set"
type ProviderSpec struct {
	// Embedded uses rekey's own engine, whose keystore the operator holds.
	// +optional
	Embedded *EmbeddedProvider `json:"embedded,omitempty"`
	// AWS uses AWS KMS, or any endpoint that speaks its API.
	// +optional
	AWS *AWSProvider `json:"aws,omitempty"`
}

// EmbeddedProvider has no settings yet: the operator's flags name its keystore.
type EmbeddedProvider struct{}

// AWSProvider configures AWS KMS.
type AWSProvider struct {
	// Region of the keys, for example eu-west-1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Region string `json:"region"`
	// Endpoint overrides the KMS endpoint URL (for a VPC endpoint or a
	// compatible service): https://host[:port], and one of the endpoints the
	// operator's admin allowed (--aws-allowed-endpoints).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Endpoint string `json:"endpoint,omitempty"`
	// CredentialsSecretRef names a Secret of type rekey.dev/aws-credentials
	// in the KeyRotation's namespace with AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN). Empty means
	// the operator's default credential chain.
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GitOpsPolicy is what a rotation does with Secrets applied from Git.
type GitOpsPolicy string

const (
	// GitOpsReport leaves GitOps-managed Secrets unwritten and reports
	// them (the default).
	GitOpsReport GitOpsPolicy = "Report"
	// GitOpsRotate rotates them like any other Secret.
	GitOpsRotate GitOpsPolicy = "Rotate"
)

// Phase is where a KeyRotation is in its life.
// +kubebuilder:validation:Enum=Pending;Running;Paused;Stalled;Succeeded;Failed
type Phase string

// The phases of a KeyRotation. Succeeded and Failed end a run; the others
// belong to a run in progress.
const (
	PhasePending   Phase = "Pending"
	PhaseRunning   Phase = "Running"
	PhasePaused    Phase = "Paused"
	PhaseStalled   Phase = "Stalled"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
)

// Condition types.
const (
	ConditionReady             = "Ready"
	ConditionReconciling       = "Reconciling"
	ConditionStalled           = "Stalled"
	ConditionSourceKeysDrained = "SourceKeysDrained"
)

// SecretCounts counts Secrets. Once a run has read every Secret, total =
// rotated + wouldRotate + skipped + failed.
type SecretCounts struct {
	Total   int64 `json:"total"`
	Rotated int64 `json:"rotated"`
	// WouldRotate counts, in a dry run, the Secrets a real run would write.
	// +optional
	WouldRotate int64 `json:"wouldRotate,omitempty"`
	Skipped     int64 `json:"skipped"`
	Failed      int64 `json:"failed"`
}

// BlobCounts counts ciphertext blobs of the Secrets read so far: at every
// checkpoint, total = rotated + wouldRotate + skipped + failed. Every blob
// of a failed Secret counts as failed: none of them was written.
type BlobCounts struct {
	Total   int64 `json:"total"`
	Rotated int64 `json:"rotated"`
	// WouldRotate counts, in a dry run, the blobs a real run would re-encrypt.
	// +optional
	WouldRotate int64 `json:"wouldRotate,omitempty"`
	Skipped     int64 `json:"skipped"`
	Failed      int64 `json:"failed"`
}

// RunStatus names one run of a rotation: what started it and when.
type RunStatus struct {
	// ID is unique per run; the Secrets a run writes carry it.
	ID string `json:"id"`
	// Generation is the KeyRotation generation the run started from.
	Generation int64 `json:"generation"`
	// SpecDigest digests the spec the run works for (all of it but paused
	// and maxConcurrency): another value restarts the run.
	SpecDigest string `json:"specDigest"`
	// RequestedAt is the rekey.dev/requested-at value the run started with.
	// +optional
	RequestedAt string      `json:"requestedAt,omitempty"`
	StartTime   metav1.Time `json:"startTime"`
}

// Verification is the last read-only pass over the selected Secrets, made
// after a run's last write and then every spec.verifyInterval. It, not the
// run's tallies, decides SourceKeysDrained.
type Verification struct {
	Time metav1.Time `json:"time"`
	// Secrets and Blobs read.
	Secrets int64 `json:"secrets"`
	Blobs   int64 `json:"blobs"`
	// BlobsUnderSourceKeys are blobs whose header names a source key (for
	// a same-key rotation: an older version of it).
	BlobsUnderSourceKeys int64 `json:"blobsUnderSourceKeys"`
	// SecretsUnderSourceKeys are the Secrets holding them.
	SecretsUnderSourceKeys int64 `json:"secretsUnderSourceKeys"`
	// Unverifiable blobs are opaque to rekey (an external KMS's format) and
	// were not written by this rotation with their current values, so no
	// read can tell which key they are under.
	Unverifiable int64 `json:"unverifiable"`
}

// Failure records one blob (or Secret) that could not be rotated. It never
// holds secret bytes.
type Failure struct {
	Secret string `json:"secret"`
	// +optional
	Key string `json:"key,omitempty"`
	// Reason is the error's class name, for example IncorrectKeyException.
	Reason string `json:"reason"`
	// +optional
	Message string `json:"message,omitempty"`
}

// InventoryEntry counts the selected blobs under one key material.
type InventoryEntry struct {
	KeyARN string `json:"keyArn"`
	// +optional
	KeyMaterialID string `json:"keyMaterialId,omitempty"`
	Blobs         int64  `json:"blobs"`
}

// KeyRotationStatus is what the controller observed and did.
type KeyRotationStatus struct {
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Run names the current (or last) run.
	// +optional
	Run *RunStatus `json:"run,omitempty"`
	// ResolvedDestinationKeyARN pins the destination key for the whole run.
	// +optional
	ResolvedDestinationKeyARN string `json:"resolvedDestinationKeyArn,omitempty"`
	// ResolvedSourceKeyARNs pins the source keys for the whole run.
	// +optional
	ResolvedSourceKeyARNs []string `json:"resolvedSourceKeyArns,omitempty"`
	// +optional
	Secrets SecretCounts `json:"secrets,omitzero"`
	// +optional
	Blobs BlobCounts `json:"blobs,omitzero"`
	// Failures lists at most 50 failures, the first ones seen.
	// +optional
	// +kubebuilder:validation:MaxItems=50
	Failures []Failure `json:"failures,omitempty"`
	// Inventory counts the selected blobs per key material, from the last
	// verification (only where blob headers can be read).
	// +optional
	// +kubebuilder:validation:MaxItems=50
	Inventory []InventoryEntry `json:"inventory,omitempty"`
	// Verification is the last read-only pass over the selected Secrets.
	// +optional
	Verification *Verification `json:"verification,omitempty"`
	// Continue is the list checkpoint: the continue token of the next page.
	// +optional
	Continue string `json:"continue,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// DryRunSample names up to 10 Secrets a dry run would rotate.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	DryRunSample []string `json:"dryRunSample,omitempty"`
	// Progress is "rotated/total" Secrets, for kubectl get.
	// +optional
	Progress string `json:"progress,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kr;krot
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.secrets.failed`
// +kubebuilder:printcolumn:name="Drained",type=string,JSONPath=`.status.conditions[?(@.type=="SourceKeysDrained")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Destination",type=string,priority=1,JSONPath=`.spec.destinationKeyId`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// KeyRotation re-encrypts the ciphertext blobs held in the Secrets of its
// namespace from the source keys to the destination key.
type KeyRotation struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec KeyRotationSpec `json:"spec"`

	// +optional
	Status KeyRotationStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// KeyRotationList contains a list of KeyRotation.
type KeyRotationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []KeyRotation `json:"items"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &KeyRotation{}, &KeyRotationList{})
		return nil
	})
}
