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

package kms

// KeyTag returns the ARN of the key ref names (a key id, key ARN, alias
// name or alias ARN, resolved as every operation resolves it) and the
// value of its tag tagKey ("" when the key has no such tag). It reads the
// current state without copying it: the key service's per-request
// authorisation calls it.
func (e *Engine) KeyTag(ref, tagKey string) (arn, value string, err error) {
	k, err := e.resolve(e.view.Load(), ref)
	if err != nil {
		return "", "", err
	}
	for _, t := range k.rec.Tags {
		if t.TagKey == tagKey {
			return k.arn, t.TagValue, nil
		}
	}
	return k.arn, "", nil
}
