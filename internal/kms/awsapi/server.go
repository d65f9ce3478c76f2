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
//
// A request is checked in this order, and nothing keyed by what a client
// sent is kept before its signature verifies: method and path, the Host
// header, the body size (MaxBody, read as it arrives), the signature (over
// the target, the content type and every x-amz-* header; ±5 minutes), the
// operation, a strict JSON decode, the principal's policy (Policy), then
// the engine. Every request ends with one audit line (AuditRecord).
// HTTPServer bounds connections, headers and time (Limits) and serves TLS.
//
// With Options.PodIdentity the same handler serves GET /v1/credentials
// (CredentialsPath, the AWS container-credentials protocol: a
// ServiceAccount token in, session credentials out) and accepts those
// session credentials, authorised by the keys' policy tags (keypolicy);
// see credentials.go and podidentity.
package awsapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	jsoniter "github.com/json-iterator/go"

	"github.com/rekey-dev/rekey/internal/keypolicy"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/podidentity"
)

// json is a drop-in, faster encoding/json: the request decode dominated the
// server's CPU per request (see docs/benchmarks.md). It is already in the
// module graph through client-go.
var json = jsoniter.ConfigCompatibleWithStandardLibrary

const (
	targetPrefix = "TrentService."
	contentType  = "application/x-amz-json-1.1"
	// MaxBody bounds a request body. KMS requests are small: the largest,
	// a ReEncrypt of a 4 KiB plaintext with two 8 KiB encryption contexts,
	// is about 30 KiB of JSON.
	MaxBody = 64 << 10
)

// Options configure a Server.
type Options struct {
	// Credentials are the access keys whose signatures are accepted.
	Credentials Credentials
	// Policy says what each access key may do. nil makes every access key
	// of Credentials an admin: the one-credential mode, for a single
	// trusted client.
	Policy *Policy
	// Hosts are the names (without a port) a request's Host header may
	// give besides the address the client connected to (and "localhost"
	// on a loopback connection). A request signed for another host is
	// refused before its signature is checked.
	Hosts []string
	// Audit receives one JSON line per request (see AuditRecord), within
	// 50 ms of the request and before FlushAudit returns; nil writes none.
	Audit io.Writer
	// Now is the clock for signature freshness (default time.Now).
	Now func() time.Time
	// Log receives one line per failed request (never request bodies).
	Log logr.Logger
	// PodIdentity, when set, serves GET /v1/credentials (Pods trade their
	// ServiceAccount token for session credentials) and accepts session
	// credentials, authorised by the keys' policy tags (keypolicy).
	PodIdentity *PodIdentity
}

// Server is an http.Handler for the KMS JSON protocol.
type Server struct {
	engine    *kms.Engine
	verify    *verifier
	ops       map[string]operation
	grants    map[string]*grant
	hosts     map[string]bool
	keyPrefix string
	audit     *auditLog
	log       logr.Logger
	now       func() time.Time
	pod       *podIdentity
}

// operation is one KMS operation: whether it is for admins, and how to
// decode, authorise and call it.
type operation struct {
	name  string
	admin bool
	call  func(ctx context.Context, s *Server, g *grant, body []byte, keys []string) (any, []string, error)
}

// op adapts an engine method to the wire: decode the request JSON strictly
// into its input type, authorise the principal for the operation on the
// keys the input names (refs), call the method. pin, when given, names the
// input's field of the key the request uses: once authorised, an alias
// there is replaced by the ARN of the key it was authorised as, so the
// engine uses that key even if the alias moves meanwhile.
func op[In, Out any](name string, f func(context.Context, *In) (*Out, error), refs func(*In) keyRefs, pin ...func(*In) *string) operation {
	return operation{
		name:  name,
		admin: slices.Contains(AdminOperations, name),
		call: func(ctx context.Context, s *Server, g *grant, body []byte, keys []string) (any, []string, error) {
			in := new(In)
			if len(body) > 0 {
				if err := decodeRequest(body, in); err != nil {
					return nil, keys, &kms.Error{Code: kms.CodeSerialization, Message: "the request body is not valid JSON for this operation: " + serializationReason(err)}
				}
			}
			keys, err := s.authorize(g, name, refs(in), keys)
			if err != nil {
				return nil, keys, err
			}
			if len(pin) > 0 && !g.admin && len(keys) > 0 {
				if ref := pin[0](in); *ref != "" && s.arnOf(*ref) == "" && strings.HasPrefix(keys[len(keys)-1], s.keyPrefix) {
					*ref = keys[len(keys)-1]
				}
			}
			out, err := f(ctx, in)
			return out, keys, err
		},
	}
}

// serializationReason says why a body did not decode without quoting it.
func serializationReason(err error) string {
	switch {
	case errors.Is(err, errDuplicate):
		return "a name appears twice in one object"
	case errors.Is(err, errJSON):
		return "malformed JSON"
	}
	msg := err.Error()
	if i := strings.Index(msg, "found unknown field"); i >= 0 {
		return "a field name this operation does not have (names are case-sensitive)"
	}
	return "a field has the wrong type or the JSON is malformed"
}

func key(id string) keyRefs { return keyRefs{refs: []string{id}} }

// New returns a server for engine.
func New(engine *kms.Engine, o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	e := engine
	hosts := map[string]bool{}
	for _, h := range o.Hosts {
		hosts[strings.ToLower(h)] = true
	}
	s := &Server{
		engine:    engine,
		verify:    &verifier{creds: o.Credentials, service: "kms", now: o.Now},
		pod:       newPodIdentity(o.PodIdentity),
		grants:    compilePolicy(o.Policy, engine, o.Credentials),
		hosts:     hosts,
		keyPrefix: engine.KeyARN(""),
		log:       o.Log,
		now:       o.Now,
	}
	if s.pod != nil {
		s.verify.sessions = s.pod.Sessions
	}
	if o.Audit != nil {
		s.audit = newAuditLog(o.Audit, o.Now)
	}
	ops := []operation{
		op("CreateKey", func(ctx context.Context, in *kms.CreateKeyInput) (*kms.CreateKeyOutput, error) {
			if err := checkPolicyTags(in.Tags); err != nil {
				return nil, err
			}
			return e.CreateKey(ctx, in)
		}, func(*kms.CreateKeyInput) keyRefs { return keyRefs{} }),
		op("DescribeKey", e.DescribeKey, func(in *kms.DescribeKeyInput) keyRefs { return key(in.KeyID) }),
		op("ListKeys", e.ListKeys, func(*kms.ListKeysInput) keyRefs { return keyRefs{} }),
		op("CreateAlias", e.CreateAlias, func(in *kms.CreateAliasInput) keyRefs { return key(in.TargetKeyID) }),
		op("UpdateAlias", e.UpdateAlias, func(in *kms.UpdateAliasInput) keyRefs { return key(in.TargetKeyID) }),
		op("DeleteAlias", e.DeleteAlias, func(in *kms.DeleteAliasInput) keyRefs { return key(in.AliasName) }),
		op("ListAliases", e.ListAliases, func(in *kms.ListAliasesInput) keyRefs { return key(in.KeyID) }),
		op("EnableKey", e.EnableKey, func(in *kms.KeyIDInput) keyRefs { return key(in.KeyID) }),
		op("DisableKey", e.DisableKey, func(in *kms.KeyIDInput) keyRefs { return key(in.KeyID) }),
		op("ScheduleKeyDeletion", e.ScheduleKeyDeletion, func(in *kms.ScheduleKeyDeletionInput) keyRefs { return key(in.KeyID) }),
		op("CancelKeyDeletion", e.CancelKeyDeletion, func(in *kms.KeyIDInput) keyRefs { return key(in.KeyID) }),
		op("RotateKeyOnDemand", e.RotateKeyOnDemand, func(in *kms.KeyIDInput) keyRefs { return key(in.KeyID) }),
		op("ListKeyRotations", e.ListKeyRotations, func(in *kms.ListKeyRotationsInput) keyRefs { return key(in.KeyID) }),
		op("Encrypt", e.Encrypt, func(in *kms.EncryptInput) keyRefs { return key(in.KeyID) },
			func(in *kms.EncryptInput) *string { return &in.KeyID }),
		op("Decrypt", e.Decrypt, func(in *kms.DecryptInput) keyRefs {
			return keyRefs{refs: []string{in.KeyID}, blob: in.CiphertextBlob, hasBlob: true}
		}),
		op("ReEncrypt", e.ReEncrypt, func(in *kms.ReEncryptInput) keyRefs {
			return keyRefs{refs: []string{in.SourceKeyID, in.DestinationKeyID}, blob: in.CiphertextBlob, hasBlob: true}
		}, func(in *kms.ReEncryptInput) *string { return &in.DestinationKeyID }),
		op("GenerateDataKey", e.GenerateDataKey, func(in *kms.GenerateDataKeyInput) keyRefs { return key(in.KeyID) },
			func(in *kms.GenerateDataKeyInput) *string { return &in.KeyID }),
		op("GenerateDataKeyWithoutPlaintext", e.GenerateDataKeyWithoutPlaintext, func(in *kms.GenerateDataKeyInput) keyRefs { return key(in.KeyID) },
			func(in *kms.GenerateDataKeyInput) *string { return &in.KeyID }),
		op("CreateGrant", e.CreateGrant, func(in *kms.CreateGrantInput) keyRefs { return key(in.KeyID) }),
		op("RetireGrant", e.RetireGrant, func(in *kms.RetireGrantInput) keyRefs { return key(in.KeyID) }),
		op("ListGrants", e.ListGrants, func(in *kms.ListGrantsInput) keyRefs { return key(in.KeyID) }),
		op("TagResource", func(ctx context.Context, in *kms.TagResourceInput) (*kms.Empty, error) {
			if err := checkPolicyTags(in.Tags); err != nil {
				return nil, err
			}
			return e.TagResource(ctx, in)
		}, func(in *kms.TagResourceInput) keyRefs { return key(in.KeyID) }),
		op("UntagResource", e.UntagResource, func(in *kms.UntagResourceInput) keyRefs { return key(in.KeyID) }),
		op("ListResourceTags", e.ListResourceTags, func(in *kms.ListResourceTagsInput) keyRefs { return key(in.KeyID) }),
	}
	s.ops = make(map[string]operation, len(ops))
	for _, o := range ops {
		s.ops[o.name] = o
	}
	return s
}

// checkPolicyTags refuses a workload policy tag (keypolicy) whose value
// does not parse: an admin's typo would otherwise grant nothing, silently.
func checkPolicyTags(tags []kms.Tag) error {
	for _, t := range tags {
		if keypolicy.IsPolicyTag(t.TagKey) {
			if _, err := keypolicy.Parse(t.TagValue); err != nil {
				return &kms.Error{Code: kms.CodeValidation, Message: "tag " + t.TagKey + ": " + err.Error()}
			}
		}
	}
	return nil
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
	var b [40]byte
	return string(strconv.AppendUint(append(b[:0], requestIDPrefix...), requestSeq.Add(1), 10))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := auditRecord{start: s.now(), requestID: requestID(), remote: r.RemoteAddr}
	w.Header().Set("X-Amzn-Requestid", rec.requestID)
	if s.pod != nil && r.URL.Path == CredentialsPath {
		s.serveCredentials(w, r, &rec)
		if s.audit != nil {
			s.audit.write(&rec)
		}
		return
	}
	bp := bufPool.Get().(*[]byte)
	out, err := s.serve(w, r, bp, &rec)
	if err == nil {
		err = s.writeResult(w, out)
	}
	if err != nil {
		s.writeError(w, &rec, err)
	} else {
		rec.status = http.StatusOK
	}
	bufPool.Put(bp)
	if s.audit != nil {
		s.audit.write(&rec)
	}
}

// FlushAudit writes the audit lines still pending. Call it after the HTTP
// server has shut down: lines are otherwise written within 50 ms.
func (s *Server) FlushAudit() {
	if s.audit != nil {
		s.audit.Flush()
	}
}

// serve authenticates, authorises and runs one request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, bp *[]byte, rec *auditRecord) (any, error) {
	if r.Method != http.MethodPost || (r.URL.Path != "/" && r.URL.Path != "") {
		return nil, &kms.Error{Code: kms.CodeUnknownOperation, Message: "requests are POST / with X-Amz-Target"}
	}
	if !s.hostAllowed(r) {
		return nil, &kms.Error{Code: kms.CodeInvalidSignature, Message: "the request's Host header does not name this endpoint"}
	}
	if r.ContentLength > MaxBody {
		w.Header().Set("Connection", "close")
		return nil, &kms.Error{Code: kms.CodeValidation, Message: "the request body is larger than 64 KiB"}
	}
	body, err := readBody(w, r, (*bp)[:0])
	*bp = body[:0]
	if err != nil {
		w.Header().Set("Connection", "close")
		return nil, err
	}
	markRead(r)
	var sess podidentity.Session
	akid, isSession, err := s.verify.verifySession(r, body, &sess)
	if err != nil {
		return nil, err
	}
	rec.principal = akid
	if isSession {
		rec.principal, rec.session = sess.Username(), akid
	}
	target := r.Header.Get("X-Amz-Target")
	opName, ok := strings.CutPrefix(target, targetPrefix)
	if !ok {
		return nil, &kms.Error{Code: kms.CodeUnknownOperation, Message: "X-Amz-Target must be TrentService.<Operation>"}
	}
	o, ok := s.ops[opName]
	if !ok {
		return nil, &kms.Error{Code: kms.CodeUnknownOperation, Message: "operation " + auditKey(opName) + " is not supported"}
	}
	rec.operation = o.name
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, contentType) && !strings.HasPrefix(ct, "application/x-amz-json-1.0") {
		return nil, &kms.Error{Code: kms.CodeSerialization, Message: "Content-Type must be " + contentType}
	}
	g := s.grants[akid]
	switch {
	case isSession:
		g = &grant{id: rec.principal, session: &sess}
	case g == nil:
		g = &grant{id: akid} // authenticated, allowed nothing
	}
	out, keys, err := o.call(r.Context(), s, g, body, rec.keyBuf[:0])
	rec.keys = keys
	return out, err
}

// hostAllowed reports whether the Host header names this endpoint: one of
// the configured names, the address the client connected to, or
// "localhost" on a loopback connection. The port is not compared (a port
// forward may change it).
func (s *Server) hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if host == "" {
		return false
	}
	if s.hosts[host] || s.hosts[strings.ToLower(host)] {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	var la netip.Addr
	if tcp, ok := local.(*net.TCPAddr); ok {
		la = tcp.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(local.String()); err == nil {
		la = ap.Addr()
	} else {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap() == la.Unmap()
	}
	return strings.EqualFold(host, "localhost") && la.IsLoopback()
}

// writeResult writes a successful response.
func (s *Server) writeResult(w http.ResponseWriter, out any) error {
	bp := bufPool.Get().(*[]byte)
	b, ok := encodeResponse((*bp)[:0], out)
	if ok {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}
	*bp = b[:0]
	bufPool.Put(bp)
	if ok {
		return nil
	}
	st := json.BorrowStream(nil)
	defer json.ReturnStream(st)
	st.WriteVal(out)
	if st.Error != nil {
		return st.Error
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(st.Buffer())
	return nil
}

// bufPool recycles the request body and response buffers: reading bodies
// by growing a fresh slice was the largest allocation per request.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads the request body into buf, at most MaxBody bytes. The
// buffer grows with what arrives, never with what Content-Length announces.
func readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), MaxBody-len(buf)+1))
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return buf, &kms.Error{Code: kms.CodeValidation, Message: "the request body is larger than 64 KiB"}
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

func (s *Server) writeError(w http.ResponseWriter, rec *auditRecord, err error) {
	var ke *kms.Error
	if !errors.As(err, &ke) {
		// A keystore or internal failure: log it, say only that it happened.
		s.log.Error(err, "internal error", "operation", rec.operation, "requestId", rec.requestID)
		ke = &kms.Error{Code: kms.CodeInternal, Message: "internal error (request " + rec.requestID + ")"}
	} else {
		s.log.V(1).Info("request failed", "operation", rec.operation, "requestId", rec.requestID, "code", string(ke.Code))
	}
	rec.code = string(ke.Code)
	rec.status = statusOf(ke.Code)
	b, _ := json.Marshal(wireError{Type: string(ke.Code), Message: ke.Message})
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(rec.status)
	_, _ = w.Write(b)
}
