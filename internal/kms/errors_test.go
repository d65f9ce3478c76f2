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

import "testing"

// TestClassOf pins the table of docs/kms.md, rekey's own codes included:
// they stop the run and are never retried.
func TestClassOf(t *testing.T) {
	want := map[ErrorCode]Class{
		CodeThrottling: ClassRetry, CodeInternal: ClassRetry, CodeDependencyTimeout: ClassRetry,
		CodeKeyUnavailable: ClassRetry, CodeLimitExceeded: ClassRetry,
		CodeIncorrectKey: ClassFailBlob, CodeInvalidCiphertext: ClassFailBlob, CodeInvalidGrantToken: ClassFailBlob,
		CodeDisabled: ClassStopRun, CodeInvalidState: ClassStopRun, CodeNotFound: ClassStopRun,
		CodeAccessDenied: ClassStopRun, CodeValidation: ClassStopRun,
		CodeInvalidResponse: ClassStopRun, CodeCredentials: ClassStopRun, CodeRequestFailed: ClassStopRun,
		"SomethingNewException": ClassStopRun,
	}
	for code, class := range want {
		if got := ClassOf(code); got != class {
			t.Errorf("ClassOf(%s) = %v, want %v", code, got, class)
		}
	}
}
