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

// Package keypolicy is the key policy for workloads: key tags that say
// which namespaces, and which ServiceAccounts, may call Decrypt, Encrypt
// and GenerateDataKey with a key. They are tags so that every replica of
// the key service and the controller read the same policy from the
// keystore, and only the key service's admins can change it (TagResource
// is an admin operation).
//
// A tag's value is a comma-separated list of entries, each NAMESPACE (every
// ServiceAccount of the namespace) or NAMESPACE/SERVICEACCOUNT. Namespaces
// are DNS labels and ServiceAccount names DNS subdomains, as Kubernetes
// validates them; there are no wildcards.
package keypolicy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The policy tags.
const (
	// DecryptTag lists who may call Decrypt.
	DecryptTag = "rekey.dev/decrypt"
	// EncryptTag lists who may call Encrypt.
	EncryptTag = "rekey.dev/encrypt"
	// GenerateDataKeyTag lists who may call GenerateDataKey and
	// GenerateDataKeyWithoutPlaintext.
	GenerateDataKeyTag = "rekey.dev/generate-data-key"
)

// maxValue is the longest tag value the engine stores.
const maxValue = 256

// Operations names the policies as the CLI does (rekey key grant
// --operations), each with its tag.
var Operations = map[string]string{
	"decrypt":           DecryptTag,
	"encrypt":           EncryptTag,
	"generate-data-key": GenerateDataKeyTag,
}

// OperationNames are the keys of Operations, sorted.
var OperationNames = []string{"decrypt", "encrypt", "generate-data-key"}

// Tags are the policy tags, sorted.
var Tags = []string{DecryptTag, EncryptTag, GenerateDataKeyTag}

// TagFor returns the tag that governs a KMS operation for a workload, ""
// for an operation no workload may call.
func TagFor(operation string) string {
	switch operation {
	case "Decrypt":
		return DecryptTag
	case "Encrypt":
		return EncryptTag
	case "GenerateDataKey", "GenerateDataKeyWithoutPlaintext":
		return GenerateDataKeyTag
	}
	return ""
}

// IsPolicyTag reports whether a tag key is one of the policy tags.
func IsPolicyTag(key string) bool { return slices.Contains(Tags, key) }

// Entry is one entry of a policy tag: a namespace, or one ServiceAccount
// of it.
type Entry struct {
	Namespace      string
	ServiceAccount string // "" for every ServiceAccount of Namespace
}

func (e Entry) String() string {
	if e.ServiceAccount == "" {
		return e.Namespace
	}
	return e.Namespace + "/" + e.ServiceAccount
}

// ErrInvalid is wrapped by every error of ParseEntry and Parse.
var ErrInvalid = errors.New("invalid key policy entry")

// ParseEntry reads NAMESPACE or NAMESPACE/SERVICEACCOUNT strictly.
func ParseEntry(s string) (Entry, error) {
	ns, sa, hasSA := strings.Cut(s, "/")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return Entry{}, fmt.Errorf("%w: %q: the namespace %s", ErrInvalid, s, errs[0])
	}
	if hasSA {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return Entry{}, fmt.Errorf("%w: %q: the ServiceAccount name %s", ErrInvalid, s, errs[0])
		}
	}
	return Entry{Namespace: ns, ServiceAccount: sa}, nil
}

// Parse reads a policy tag's value strictly: every entry valid, none
// empty, none twice.
func Parse(value string) ([]Entry, error) {
	if value == "" {
		return nil, nil
	}
	var out []Entry
	for s := range strings.SplitSeq(value, ",") {
		e, err := ParseEntry(s)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, e) {
			return nil, fmt.Errorf("%w: %q appears twice", ErrInvalid, s)
		}
		out = append(out, e)
	}
	return out, nil
}

// Format writes entries as a tag value, refusing one longer than a tag
// value may be.
func Format(entries []Entry) (string, error) {
	parts := make([]string, len(entries))
	for i, e := range entries {
		parts[i] = e.String()
	}
	v := strings.Join(parts, ",")
	if len(v) > maxValue {
		return "", fmt.Errorf("%w: the list is %d characters, a tag value holds at most %d", ErrInvalid, len(v), maxValue)
	}
	return v, nil
}

// Allows reports whether a policy tag's value lists the ServiceAccount
// name in namespace, by its namespace or by itself. It allocates nothing
// (it runs on every request), and an entry that is not well formed
// matches nothing.
func Allows(value, namespace, name string) bool {
	if namespace == "" || name == "" {
		return false
	}
	for value != "" {
		var entry string
		entry, value, _ = strings.Cut(value, ",")
		ns, sa, hasSA := strings.Cut(entry, "/")
		if ns == namespace && (!hasSA || sa == name) {
			return true
		}
	}
	return false
}
