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

import "strings"

// Placeholders an encryption context value of a KeyRotation's spec may
// hold: they bind each blob to the Secret and data key it lives in.
const (
	ContextPlaceholderNamespace = "{namespace}"
	ContextPlaceholderName      = "{name}"
	ContextPlaceholderKey       = "{key}"
)

// ContextTemplated reports whether a context holds a placeholder.
func ContextTemplated(ec map[string]string) bool {
	for _, v := range ec {
		if strings.Contains(v, ContextPlaceholderNamespace) || strings.Contains(v, ContextPlaceholderName) ||
			strings.Contains(v, ContextPlaceholderKey) {
			return true
		}
	}
	return false
}

// ExpandEncryptionContext fills a context's placeholders for one blob: the
// Secret's namespace and name and the data key. A context without
// placeholders is returned as it is (not copied).
func ExpandEncryptionContext(ec map[string]string, namespace, name, key string) map[string]string {
	if !ContextTemplated(ec) {
		return ec
	}
	r := strings.NewReplacer(ContextPlaceholderNamespace, namespace, ContextPlaceholderName, name, ContextPlaceholderKey, key)
	out := make(map[string]string, len(ec))
	for k, v := range ec {
		out[k] = r.Replace(v)
	}
	return out
}
