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
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// The controller's error taxonomy. Every error a step returns is one of:
//
//   - a *stallError: nothing will work until a person changes something (a
//     key's state, a permission, the spec). The run stops at once; Stalled.
//   - a *waitingError: the key service or the apiserver is unavailable for
//     now. The page is redone later; Reconciling says why, and Stalled
//     after transientStallAfter of failures in a row.
//
// Per-blob and per-Secret causes are not errors: they are failures of that
// Secret, recorded in status (see secretResult). classify is the one place
// that turns any error into its class.

// stallError stops a run until a person changes something. Reason is a
// PascalCase word users can search for; for key service errors it is the
// AWS error name. It wraps its cause.
type stallError struct {
	Reason string
	Err    error
	// Terminal means waiting cannot help: only a spec change can.
	Terminal bool
}

func (e *stallError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *stallError) Unwrap() error { return e.Err }

func stall(reason, format string, args ...any) *stallError {
	return &stallError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// waitingError is a transient failure: the same work is tried again later.
// It wraps its cause.
type waitingError struct {
	Reason string
	Err    error
}

func (e *waitingError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *waitingError) Unwrap() error { return e.Err }

// transientStallAfter is how long transient failures in a row may last
// before the rotation shows Stalled (kstatus Failed) rather than Reconciling.
const transientStallAfter = time.Minute

func asStall(err error) (*stallError, bool) {
	var s *stallError
	ok := errors.As(err, &s)
	return s, ok
}

func asWaiting(err error) (*waitingError, bool) {
	var w *waitingError
	ok := errors.As(err, &w)
	return w, ok
}

// class is what the controller does about an error.
type class int

const (
	classRetry    class = iota + 1 // transient: try again after a backoff
	classFailBlob                  // this blob or Secret is bad: fail it, go on
	classStopRun                   // stop the run until a person acts
)

// classify is the one place that decides what an error means to a run.
//
// Key service errors follow their code (kms.ClassOf), with one refinement:
// ValidationException fails the blob. The spec's parts of a request are
// validated by the CRD before any call, so what the key service refuses is
// this blob or this Secret's context (a value too large, an invalid context
// annotation); the rest of the namespace must not wait for it.
//
// Kubernetes API errors: throttling, timeouts and unavailability are
// retried; a refused permission stops the run; a request the apiserver finds
// invalid or too large fails the Secret. Anything else is unexpected: it
// stops the run with its message, so it is seen, not retried in silence.
func classify(err error) (class, string) {
	if code := kms.CodeOf(err); code != "" {
		if code == kms.CodeValidation {
			return classFailBlob, string(code)
		}
		switch kms.ClassOf(code) {
		case kms.ClassRetry:
			return classRetry, string(code)
		case kms.ClassFailBlob:
			return classFailBlob, string(code)
		default:
			return classStopRun, string(code)
		}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return classRetry, "Timeout"
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err),
		apierrors.IsResourceExpired(err), apierrors.IsConflict(err):
		return classRetry, "APIServerUnavailable"
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return classStopRun, "Forbidden"
	case apierrors.IsInvalid(err), apierrors.IsRequestEntityTooLargeError(err), apierrors.IsBadRequest(err):
		return classFailBlob, ReasonWriteRejected
	}
	var se *stallError
	if errors.As(err, &se) {
		return classStopRun, se.Reason
	}
	var we *waitingError
	if errors.As(err, &we) {
		return classRetry, we.Reason
	}
	var re *secretpage.ReadError
	if isNetworkError(err) || errors.As(err, &re) {
		return classRetry, "APIServerUnavailable"
	}
	return classStopRun, ReasonUnexpectedError
}

// asStepError wraps err as the controller's stall or waiting error, by its
// class, with what the controller was doing. A fail-blob class here (an
// error outside a blob's own work) stops the run too: it is not one blob's.
func asStepError(err error, doing string) error {
	if err == nil {
		return nil
	}
	if _, ok := asStall(err); ok {
		return err
	}
	if _, ok := asWaiting(err); ok {
		return err
	}
	cl, reason := classify(err)
	wrapped := fmt.Errorf("%s: %w", doing, err)
	if cl == classRetry {
		return &waitingError{Reason: reason, Err: wrapped}
	}
	return &stallError{Reason: reason, Err: wrapped}
}

// isNetworkError reports a transport failure talking to the apiserver.
func isNetworkError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
