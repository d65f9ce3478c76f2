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

import (
	"errors"
	"fmt"
)

// ErrorCode is the AWS KMS name of an error ("__type" on the wire).
type ErrorCode string

// The error codes the engine returns, with AWS KMS's names.
const (
	CodeNotFound            ErrorCode = "NotFoundException"
	CodeIncorrectKey        ErrorCode = "IncorrectKeyException"
	CodeInvalidCiphertext   ErrorCode = "InvalidCiphertextException"
	CodeDisabled            ErrorCode = "DisabledException"
	CodeInvalidState        ErrorCode = "KMSInvalidStateException"
	CodeInvalidGrantToken   ErrorCode = "InvalidGrantTokenException"
	CodeInvalidGrantID      ErrorCode = "InvalidGrantIdException"
	CodeValidation          ErrorCode = "ValidationException"
	CodeLimitExceeded       ErrorCode = "LimitExceededException"
	CodeDryRunOperation     ErrorCode = "DryRunOperationException"
	CodeAlreadyExists       ErrorCode = "AlreadyExistsException"
	CodeInvalidAliasName    ErrorCode = "InvalidAliasNameException"
	CodeInvalidMarker       ErrorCode = "InvalidMarkerException"
	CodeUnsupportedOp       ErrorCode = "UnsupportedOperationException"
	CodeAccessDenied        ErrorCode = "AccessDeniedException"
	CodeKeyUnavailable      ErrorCode = "KeyUnavailableException"
	CodeThrottling          ErrorCode = "ThrottlingException"
	CodeInternal            ErrorCode = "KMSInternalException"
	CodeDependencyTimeout   ErrorCode = "DependencyTimeoutException"
	CodeInvalidKeyUsage     ErrorCode = "InvalidKeyUsageException"
	CodeInvalidArn          ErrorCode = "InvalidArnException"
	CodeUnrecognizedClient  ErrorCode = "UnrecognizedClientException"
	CodeInvalidSignature    ErrorCode = "InvalidSignatureException"
	CodeIncompleteSignature ErrorCode = "IncompleteSignatureException"
	CodeMissingAuthToken    ErrorCode = "MissingAuthenticationTokenException"
	CodeSerialization       ErrorCode = "SerializationException"
	CodeUnknownOperation    ErrorCode = "UnknownOperationException"
)

// Codes of rekey's own, for failures of a remote key service (the aws
// provider) that are not an AWS error. Like every code ClassOf does not
// list, each stops the run: retrying would not help, a person must look
// (docs/kms.md, docs/providers.md).
const (
	// CodeInvalidResponse: the endpoint answered with something that is not
	// a KMS response — an HTML page, a 404 from another HTTP server, a body
	// that does not decode. The message names the endpoint and the HTTP
	// status, never the body.
	CodeInvalidResponse ErrorCode = "InvalidResponseException"
	// CodeCredentials: the AWS credentials could not be resolved (no
	// identity in the chain, a failing credential_process, an unreachable
	// instance metadata service).
	CodeCredentials ErrorCode = "CredentialsException"
	// CodeRequestFailed: the call could not be made for another reason
	// retrying does not fix (TLS, an invalid endpoint, a request that does
	// not serialise or sign).
	CodeRequestFailed ErrorCode = "RequestFailedException"
)

// Class says what a caller should do about an error.
type Class int

// The classes every error belongs to.
const (
	// ClassRetry: transient; try the same call again after a backoff.
	ClassRetry Class = iota + 1
	// ClassFailBlob: this blob (or request) is bad; other blobs may succeed.
	ClassFailBlob
	// ClassStopRun: the key or the caller's access is wrong; nothing will
	// succeed until a person changes it.
	ClassStopRun
)

func (c Class) String() string {
	switch c {
	case ClassRetry:
		return "Retry"
	case ClassFailBlob:
		return "FailBlob"
	case ClassStopRun:
		return "StopRun"
	default:
		return fmt.Sprintf("Class(%d)", int(c))
	}
}

// ClassOf returns the class of a code. Unknown codes stop the run: a person
// should look before anything is retried or written.
func ClassOf(code ErrorCode) Class {
	switch code {
	case CodeThrottling, CodeInternal, CodeDependencyTimeout, CodeKeyUnavailable, CodeLimitExceeded:
		return ClassRetry
	case CodeIncorrectKey, CodeInvalidCiphertext, CodeInvalidGrantToken:
		return ClassFailBlob
	default:
		return ClassStopRun
	}
}

// Error is an engine error. Its message never holds key material, plaintext
// or ciphertext bytes.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Class returns what a caller should do about the error.
func (e *Error) Class() Class { return ClassOf(e.Code) }

// Is makes errors.Is(err, kms.ErrNotFound) match any error with that code.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is.
var (
	ErrNotFound          = &Error{Code: CodeNotFound}
	ErrIncorrectKey      = &Error{Code: CodeIncorrectKey}
	ErrInvalidCiphertext = &Error{Code: CodeInvalidCiphertext}
	ErrDisabled          = &Error{Code: CodeDisabled}
	ErrInvalidState      = &Error{Code: CodeInvalidState}
	ErrInvalidGrantToken = &Error{Code: CodeInvalidGrantToken}
	ErrValidation        = &Error{Code: CodeValidation}
	ErrLimitExceeded     = &Error{Code: CodeLimitExceeded}
	ErrDryRunOperation   = &Error{Code: CodeDryRunOperation}
	ErrAlreadyExists     = &Error{Code: CodeAlreadyExists}
)

func newError(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of an engine error in err's chain, or "" when there is none.
func CodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ClassOfError returns the class of any error: engine errors by their code;
// anything else (a broken keystore, a cancelled context) is retried.
func ClassOfError(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class()
	}
	return ClassRetry
}
