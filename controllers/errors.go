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
	"errors"
	"fmt"
	"time"
)

// stallError stops a run until a person changes something (a key's state, a
// permission, the spec). Reason is a PascalCase word users can search for;
// for key service errors it is the AWS error name.
type stallError struct {
	Reason  string
	Message string
	// Terminal means waiting cannot help: only a spec change can.
	Terminal bool
}

func (e *stallError) Error() string { return e.Reason + ": " + e.Message }

func stall(reason, format string, args ...any) *stallError {
	return &stallError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// stallRecheck is how often a stalled rotation looks again whether the
// cause (a disabled key, say) went away.
const stallRecheck = time.Minute

func asStall(err error) (*stallError, bool) {
	var s *stallError
	ok := errors.As(err, &s)
	return s, ok
}
