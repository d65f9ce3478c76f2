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

// Package awsapi serves the engine over the AWS KMS JSON protocol
// (POST /, X-Amz-Target: TrentService.<Operation>,
// Content-Type: application/x-amz-json-1.1), with AWS Signature Version 4
// verified on every request, so AWS SDKs and the AWS CLI work against it
// unchanged.
package awsapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	jsoniter "github.com/json-iterator/go"

	"github.com/rekey-dev/rekey/internal/kms"
)

// json is a drop-in, faster encoding/json: the request decode dominated the
// server's CPU per request (see docs/benchmarks.md). It is already in the
// module graph through client-go.
var json = jsoniter.ConfigCompatibleWithStandardLibrary

const (
	targetPrefix = "TrentService."
	contentType  = "application/x-amz-json-1.1"
	maxBody      = 1 << 20
)

// Options configure a Server.
type Options struct {
	// Credentials are the access keys whose signatures are accepted.
	Credentials Credentials
	// Now is the clock for signature freshness (default time.Now).
	Now func() time.Time
	// Log receives one line per failed request (never request bodies).
	Log logr.Logger
}

// Server is an http.Handler for the KMS JSON protocol.
type Server struct {
	engine *kms.Engine
	verify *verifier
	ops    map[string]operation
	log    logr.Logger
}

type operation func(ctx context.Context, body []byte) (any, error)

// op adapts an engine method to the wire: decode the request JSON into its
// input type, call the method.
func op[In, Out any](f func(context.Context, *In) (*Out, error)) operation {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(In)
		if len(body) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, &kms.Error{Code: kms.CodeSerialization, Message: "the request body is not valid JSON for this operation"}
			}
		}
		return f(ctx, in)
	}
}

// New returns a server for engine.
func New(engine *kms.Engine, o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	e := engine
	return &Server{
		engine: engine,
		verify: &verifier{creds: o.Credentials, service: "kms", now: o.Now},
		log:    o.Log,
		ops: map[string]operation{
			"CreateKey":                       op(e.CreateKey),
			"DescribeKey":                     op(e.DescribeKey),
			"ListKeys":                        op(e.ListKeys),
			"CreateAlias":                     op(e.CreateAlias),
			"UpdateAlias":                     op(e.UpdateAlias),
			"DeleteAlias":                     op(e.DeleteAlias),
			"ListAliases":                     op(e.ListAliases),
			"EnableKey":                       op(e.EnableKey),
			"DisableKey":                      op(e.DisableKey),
			"ScheduleKeyDeletion":             op(e.ScheduleKeyDeletion),
			"CancelKeyDeletion":               op(e.CancelKeyDeletion),
			"RotateKeyOnDemand":               op(e.RotateKeyOnDemand),
			"ListKeyRotations":                op(e.ListKeyRotations),
			"Encrypt":                         op(e.Encrypt),
			"Decrypt":                         op(e.Decrypt),
			"ReEncrypt":                       op(e.ReEncrypt),
			"GenerateDataKey":                 op(e.GenerateDataKey),
			"GenerateDataKeyWithoutPlaintext": op(e.GenerateDataKeyWithoutPlaintext),
			"CreateGrant":                     op(e.CreateGrant),
			"RetireGrant":                     op(e.RetireGrant),
			"ListGrants":                      op(e.ListGrants),
			"TagResource":                     op(e.TagResource),
			"UntagResource":                   op(e.UntagResource),
			"ListResourceTags":                op(e.ListResourceTags),
		},
	}
}

// statusOf is the HTTP status AWS KMS uses for an error code.
func statusOf(code kms.ErrorCode) int {
	switch code {
	case kms.CodeDisabled, kms.CodeInvalidState:
		return http.StatusConflict
	case kms.CodeDryRunOperation:
		return http.StatusPreconditionFailed
	case kms.CodeInternal, kms.CodeKeyUnavailable:
		return http.StatusInternalServerError
	case kms.CodeDependencyTimeout:
		return http.StatusServiceUnavailable
	case kms.CodeMissingAuthToken:
		return http.StatusForbidden
	default:
		return http.StatusBadRequest
	}
}

// Request ids: a random per-process prefix and a sequence number, unique
// without reading randomness per request.
var (
	requestIDPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	requestSeq atomic.Uint64
)

func requestID() string {
	return requestIDPrefix + strconv.FormatUint(requestSeq.Add(1), 10)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := requestID()
	w.Header().Set("X-Amzn-Requestid", rid)
	target := r.Header.Get("X-Amz-Target")
	opName := strings.TrimPrefix(target, targetPrefix)
	fail := func(err error) { s.writeError(w, rid, opName, err) }

	if r.Method != http.MethodPost || (r.URL.Path != "/" && r.URL.Path != "") {
		fail(&kms.Error{Code: kms.CodeUnknownOperation, Message: "requests are POST / with X-Amz-Target"})
		return
	}
	if r.ContentLength > maxBody {
		fail(&kms.Error{Code: kms.CodeValidation, Message: "the request body is larger than 1 MiB"})
		return
	}
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	body, err := readBody(r, (*bp)[:0])
	*bp = body[:0]
	if err != nil {
		fail(err)
		return
	}
	if err := s.verify.verify(r, body); err != nil {
		fail(err)
		return
	}
	if !strings.HasPrefix(target, targetPrefix) {
		fail(&kms.Error{Code: kms.CodeUnknownOperation, Message: "X-Amz-Target must be TrentService.<Operation>"})
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, contentType) && !strings.HasPrefix(ct, "application/x-amz-json-1.0") {
		fail(&kms.Error{Code: kms.CodeSerialization, Message: "Content-Type must be " + contentType})
		return
	}
	handle, ok := s.ops[opName]
	if !ok {
		fail(&kms.Error{Code: kms.CodeUnknownOperation, Message: "operation " + opName + " is not supported"})
		return
	}
	out, err := handle(r.Context(), body)
	if err != nil {
		fail(err)
		return
	}
	st := json.BorrowStream(nil)
	defer json.ReturnStream(st)
	st.WriteVal(out)
	if st.Error != nil {
		fail(st.Error)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(st.Buffer())
}

// bodyPool recycles request body buffers: reading bodies by growing a fresh
// slice was the largest allocation per request.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads at most maxBody bytes of the request body into buf.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	if r.ContentLength > 0 {
		buf = slices.Grow(buf, int(r.ContentLength))
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxBody {
			return buf, &kms.Error{Code: kms.CodeValidation, Message: "the request body is larger than 1 MiB"}
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, &kms.Error{Code: kms.CodeSerialization, Message: "reading the request body failed"}
		}
	}
}

type wireError struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

func (s *Server) writeError(w http.ResponseWriter, rid, opName string, err error) {
	var ke *kms.Error
	if !errors.As(err, &ke) {
		// A keystore or internal failure: log it, say only that it happened.
		s.log.Error(err, "internal error", "operation", opName, "requestId", rid)
		ke = &kms.Error{Code: kms.CodeInternal, Message: "internal error (request " + rid + ")"}
	} else {
		s.log.V(1).Info("request failed", "operation", opName, "requestId", rid, "code", string(ke.Code))
	}
	b, _ := json.Marshal(wireError{Type: string(ke.Code), Message: ke.Message})
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(statusOf(ke.Code))
	_, _ = w.Write(b)
}
