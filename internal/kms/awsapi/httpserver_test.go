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
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// The http.Server carries every limit (WriteTimeout has no behavioural test:
// a KMS response fits in the socket buffers, so no client can make a write
// block; the deadline is there for a handler that does).
func TestHTTPServerCarriesLimits(t *testing.T) {
	l := Limits{MaxConnections: 3, ReadHeaderTimeout: 1 * time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second, MaxHeaderBytes: 5}
	s := NewHTTPServer(http.NotFoundHandler(), l, nil, logr.Discard())
	got := Limits{MaxConnections: s.conns.max, ReadHeaderTimeout: s.srv.ReadHeaderTimeout, ReadTimeout: s.srv.ReadTimeout,
		WriteTimeout: s.srv.WriteTimeout, IdleTimeout: s.srv.IdleTimeout, MaxHeaderBytes: s.srv.MaxHeaderBytes}
	if got != l {
		t.Fatalf("server limits %+v, want %+v", got, l)
	}
	if s.srv.Protocols == nil || s.srv.Protocols.HTTP2() || s.srv.Protocols.UnencryptedHTTP2() {
		t.Fatalf("HTTP/2 is on: %v", s.srv.Protocols)
	}
	d := DefaultLimits()
	if d.MaxConnections == 0 || d.ReadHeaderTimeout == 0 || d.ReadTimeout == 0 || d.WriteTimeout == 0 || d.IdleTimeout == 0 ||
		d.MaxHeaderBytes == 0 || d.ReadTimeout > 30*time.Second {
		t.Fatalf("default limits %+v: every one set, slow clients cut off within 30 s", d)
	}
}

// The connection limit leaves file descriptors for the keystore, the audit
// log and the listener.
func TestFitConnectionLimit(t *testing.T) {
	for _, c := range []struct {
		max   int
		limit uint64
		want  int
	}{{256, 1 << 20, 256}, {256, 256, 128}, {256, 100, 50}, {256, 1, 256}, {10, 30, 10}} {
		if got := fitConnectionLimit(c.max, c.limit); got != c.want {
			t.Errorf("fitConnectionLimit(%d, %d) = %d, want %d", c.max, c.limit, got, c.want)
		}
	}
}
