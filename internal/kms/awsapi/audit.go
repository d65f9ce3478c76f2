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

package awsapi

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AuditRecord is one line of the audit log, written for every request the
// handler saw, whatever its outcome. It never holds request or response
// data: no plaintext, ciphertext, encryption context or grant token.
type AuditRecord struct {
	// Time is when the request reached the handler (RFC 3339, UTC).
	Time string `json:"time"`
	// RequestID is the X-Amzn-Requestid the response carried.
	RequestID string `json:"requestId"`
	// Principal is the access key id whose signature verified; empty when
	// none did. For session credentials it is the ServiceAccount,
	// system:serviceaccount:NS:NAME.
	Principal string `json:"principal"`
	// Session is the access key id of the session credentials that signed
	// the request, or that GetCredentials issued; absent otherwise. It
	// tells one session of a ServiceAccount from another (a stolen one from
	// the Pod's own).
	Session string `json:"session,omitempty"`
	// Pod is the Pod whose token GetCredentials traded for the session
	// (the TokenReview names it for a Pod-bound token); absent otherwise.
	// With Session it ties every request of a session to one Pod.
	Pod string `json:"pod,omitempty"`
	// Operation is the KMS operation; empty when the request named none
	// this server has or was refused before it was read.
	Operation string `json:"operation"`
	// Keys are the keys the request used: the blob's key, then the keys it
	// named (key ARNs where known, aliases as named otherwise).
	Keys []string `json:"keys"`
	// Code is the error code ("" on success); Status the HTTP status.
	Code   string `json:"code"`
	Status int    `json:"status"`
	// Remote is the client's address.
	Remote string `json:"remote"`
	// Millis is how long the request took in the handler.
	Millis float64 `json:"ms"`
}

// auditRecord is an AuditRecord being filled in by the handler.
type auditRecord struct {
	start     time.Time
	requestID string
	principal string
	session   string
	pod       string
	operation string
	keys      []string
	keyBuf    [3]string
	code      string
	status    int
	remote    string
}

// maxAuditPending bounds the lines waiting to be written: at it, the
// request that fills it writes them itself (an audit sink that stalls
// stalls the server, rather than dropping records or growing without
// bound).
const maxAuditPending = 256 << 10

// auditFlushInterval is how long a line may wait to share a write with the
// next ones. When the log has not been written for that long, a line is
// written at once.
const auditFlushInterval = 50 * time.Millisecond

// auditLog writes one JSON line per request. A line is written at once when
// nothing was written in the last auditFlushInterval; under load, lines are
// gathered and written together at most that long after (one write call
// per batch instead of one per request: the write was 8% of the server's
// CPU per request). Flush writes what is pending; a killed process loses at
// most the last interval's lines.
type auditLog struct {
	w   io.Writer
	now func() time.Time

	mu        sync.Mutex
	idle      sync.Cond // signalled when a write ends
	pending   []byte
	spare     []byte
	writing   bool
	scheduled bool
	last      time.Time // when the last write started (wall clock, not now)
}

func newAuditLog(w io.Writer, now func() time.Time) *auditLog {
	a := &auditLog{w: w, now: now}
	a.idle.L = &a.mu
	return a
}

func (a *auditLog) write(r *auditRecord) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.writing && len(a.pending) >= maxAuditPending {
		a.idle.Wait()
	}
	a.pending = appendRecord(a.pending, r, now.Sub(r.start))
	switch {
	case a.writing:
		// The write under way takes this line too.
	case len(a.pending) >= maxAuditPending || time.Since(a.last) >= auditFlushInterval:
		a.drainLocked()
	case !a.scheduled:
		a.scheduled = true
		time.AfterFunc(auditFlushInterval, a.Flush)
	}
}

// drainLocked writes until nothing is pending, with a.mu held (released
// during each write).
func (a *auditLog) drainLocked() {
	a.writing = true
	for len(a.pending) > 0 {
		batch := a.pending
		a.pending = a.spare[:0]
		a.last = time.Now()
		a.mu.Unlock()
		_, _ = a.w.Write(batch)
		a.mu.Lock()
		a.spare = batch[:0]
		a.idle.Broadcast()
	}
	a.writing = false
	a.idle.Broadcast()
}

// Flush writes every pending line, waiting for a write under way.
func (a *auditLog) Flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.scheduled = false
	for a.writing {
		a.idle.Wait()
	}
	a.drainLocked()
}

// appendRecord appends r as one JSON line.
func appendRecord(b []byte, r *auditRecord, elapsed time.Duration) []byte {
	b = append(b, `{"time":"`...)
	b = appendTime(b, r.start)
	b = append(b, `","requestId":`...)
	b = appendJSONString(b, r.requestID)
	b = append(b, `,"principal":`...)
	b = appendJSONString(b, r.principal)
	if r.session != "" {
		b = append(b, `,"session":`...)
		b = appendJSONString(b, r.session)
	}
	if r.pod != "" {
		b = append(b, `,"pod":`...)
		b = appendJSONString(b, r.pod)
	}
	b = append(b, `,"operation":`...)
	b = appendJSONString(b, r.operation)
	b = append(b, `,"keys":[`...)
	for i, k := range r.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
	}
	b = append(b, `],"code":`...)
	b = appendJSONString(b, r.code)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, `,"remote":`...)
	b = appendJSONString(b, r.remote)
	b = append(b, `,"ms":`...)
	b = appendMillis(b, elapsed)
	return append(b, "}\n"...)
}

// appendTime appends t in UTC as RFC 3339 with milliseconds
// (2006-01-02T15:04:05.000Z), what time.Time.AppendFormat writes for that
// layout, without reading the layout on every line.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = appendDigits(append(b, '-'), int(month), 2)
	b = appendDigits(append(b, '-'), day, 2)
	b = appendDigits(append(b, 'T'), hour, 2)
	b = appendDigits(append(b, ':'), minute, 2)
	b = appendDigits(append(b, ':'), sec, 2)
	b = appendDigits(append(b, '.'), t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendMillis appends d in milliseconds with three decimals (12.345):
// exactly, where strconv.AppendFloat(ms, 'f', 3) of the same number of
// microseconds, which it replaces, rounds through a float64 for durations
// past ~278 years.
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	return appendDigits(append(b, '.'), int(us%1000), 3)
}

// appendDigits appends n (0 <= n < 10^width) as exactly width digits.
func appendDigits(b []byte, n, width int) []byte {
	for i := width - 1; i >= 0; i-- {
		d := n
		for range i {
			d /= 10
		}
		b = append(b, byte('0'+d%10))
	}
	return b
}

// escaped reports whether a byte is written other than as itself in a
// JSON string, by appendJSONString and by json-iterator (whose output the
// fast path's encoder matches): a control character, a non-ASCII byte
// (which may need replacing), DEL, a quote, a backslash, or an HTML
// character.
func escaped(c byte) bool {
	return c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&'
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Most of a line (ARNs, ids, addresses) needs no escape: copy the
	// plain prefix at once.
	plain := 0
	for plain < len(s) && !escaped(s[plain]) {
		plain++
	}
	b = append(b, s[:plain]...)
	for i := plain; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
