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
	"context"
	"net"
	"net/http"
	"runtime"
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

// The connection limit closes the connection that has waited longest for
// its client, never one whose request has arrived and waits for the server.
func TestConnLimiterSparesConnectionsWithPendingRequests(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the receive buffer is inspected on Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	pair := func() (server, client net.Conn) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
		return server, client
	}
	l := &connLimiter{max: 2, conns: map[net.Conn]*connInfo{}}
	signedS, signedC := pair() // oldest: its request has arrived, unread
	slowS, _ := pair()         // waiting for its client
	newS, _ := pair()
	if _, err := signedC.Write([]byte("POST / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !hasPending(signedS); {
		if time.Now().After(deadline) {
			t.Fatal("the written bytes never showed as pending")
		}
		time.Sleep(time.Millisecond) // the loopback delivery; bounded by the deadline
	}
	for i, c := range []net.Conn{signedS, slowS} {
		ci := &connInfo{conn: c}
		ci.since.Store(int64(i + 1))
		l.conns[c] = ci
		l.open++
	}
	l.connContext(context.Background(), newS)
	if ci := l.conns[signedS]; ci.closed {
		t.Fatal("closed the connection whose request was waiting to be read")
	}
	if ci := l.conns[slowS]; !ci.closed {
		t.Fatal("kept the connection waiting for its client")
	}
	if l.open != 2 {
		t.Fatalf("%d open, limit 2", l.open)
	}
}

// A connection working on a request it has read is never closed by the
// limit, however old; when every other connection is working, the new one
// is closed.
func TestConnLimiterSparesWorkingConnections(t *testing.T) {
	conns := make([]net.Conn, 3)
	for i := range conns {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		conns[i] = a
	}
	l := &connLimiter{max: 2, conns: map[net.Conn]*connInfo{}}
	for i, c := range conns[:2] {
		ci := &connInfo{conn: c}
		ci.since.Store(int64(i + 1))
		l.conns[c] = ci
		l.open++
	}
	l.conns[conns[0]].working.Store(true) // the oldest
	l.connContext(context.Background(), conns[2])
	if l.conns[conns[0]].closed || !l.conns[conns[1]].closed {
		t.Fatal("closed a working connection, or kept the idle one")
	}
	l.conns[conns[2]].working.Store(true)
	extra, other := net.Pipe()
	t.Cleanup(func() { _ = extra.Close(); _ = other.Close() })
	l.connContext(context.Background(), extra)
	if !l.conns[extra].closed || l.conns[conns[0]].closed || l.conns[conns[2]].closed {
		t.Fatal("with every connection working, the new one must be the one closed")
	}
}
