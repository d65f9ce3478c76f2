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
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The one reading and writing of the annotations a user's Secret carries:
// the controller reads them with EncryptedKeys and ParseEncryptionContext,
// and `rekey secret create` writes them with FormatEncryptedKeys and
// FormatEncryptionContext, so what the command writes is what the
// controller reads.

// EncryptedKeys returns the data keys an EncryptedKeysAnnotation value
// names, sorted and each once, whether or not data has them: "*" names
// every key of data; otherwise the value is split at commas, each name
// trimmed of spaces, and empty names dropped.
func EncryptedKeys(annotation string, data map[string][]byte) []string {
	annotation = strings.TrimSpace(annotation)
	var keys []string
	if annotation == "*" {
		for k := range data {
			keys = append(keys, k)
		}
	} else {
		for k := range strings.SplitSeq(annotation, ",") {
			if k = strings.TrimSpace(k); k != "" && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// FormatEncryptedKeys is the EncryptedKeysAnnotation value naming keys:
// sorted, each once, comma-separated.
func FormatEncryptedKeys(keys []string) string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return strings.Join(slices.Compact(keys), ",")
}

// ParseEncryptionContext reads an EncryptionContextAnnotation value: a JSON
// object of strings, none of whose keys is empty.
func ParseEncryptionContext(annotation string) (map[string]string, error) {
	var ec map[string]string
	if err := json.Unmarshal([]byte(annotation), &ec); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object of strings", EncryptionContextAnnotation)
	}
	if _, empty := ec[""]; empty {
		return nil, fmt.Errorf("%s has an empty key", EncryptionContextAnnotation)
	}
	return ec, nil
}

// FormatEncryptionContext is the EncryptionContextAnnotation value for ec:
// a JSON object with its keys sorted, no spaces and no HTML escaping, so
// the same context is always written the same way.
func FormatEncryptionContext(ec map[string]string) (string, error) {
	if _, empty := ec[""]; empty {
		return "", fmt.Errorf("%s cannot have an empty key", EncryptionContextAnnotation)
	}
	if ec == nil {
		ec = map[string]string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ec); err != nil { // a map's keys are sorted
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// KeyNamespaces reads a KeyNamespacesTag value: the namespaces it names,
// trimmed of spaces, each once, in order ("*" names every namespace). The
// controller's check and the key commands read the tag with it.
func KeyNamespaces(tagValue string) []string {
	var out []string
	for n := range strings.SplitSeq(tagValue, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
