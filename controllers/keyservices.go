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

package controllers

import (
	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// DefaultKeyServices picks the key service a rotation names. The embedded
// engine is the default; the AWS provider is not built yet, so a rotation
// that asks for it stalls with a reason that says so.
func DefaultKeyServices(kr *rekeyv1alpha1.KeyRotation, embedded KeyService) (KeyService, error) {
	if p := kr.Spec.Provider; p != nil && p.AWS != nil {
		return nil, &stallError{Reason: ReasonProviderMissing, Terminal: true,
			Message: "spec.provider.aws is not supported by this version of rekey yet; use provider.embedded"}
	}
	return embedded, nil
}
