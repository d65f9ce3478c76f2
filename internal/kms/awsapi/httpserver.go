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
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// Limits bound what any client, signed or not, can make the server hold.
type Limits struct {
	// MaxConnections is the most connections open at once. A connection
	// beyond it closes the open connection that has waited longest
	// without a complete request (one sending its headers or body, or
	// idle), or is itself closed when every other connection is working
	// on a request: slow or idle clients cannot lock out a signed one.
	MaxConnections int
	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout
	// its headers and body, WriteTimeout the handler and the response,
	// IdleTimeout a keep-alive connection between requests.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request's headers (net/http allows 4 KiB
	// more for its own buffering).
	MaxHeaderBytes int
}

// DefaultLimits are rekey kms serve's defaults: a KMS request is a few
// KiB sent at once, so a client that takes seconds to send one is slow on
// purpose.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:    256,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// HTTPServer serves a handler over HTTP/1.1 (TLS when configured) within
// Limits. HTTP/2 is off: one connection could otherwise carry hundreds of
// concurrent requests past the connection limit.
type HTTPServer struct {
	srv   *http.Server
	conns *connLimiter
	tls   *tls.Config
}

// NewHTTPServer returns a server for h. tlsConfig nil serves plain HTTP.
func NewHTTPServer(h http.Handler, l Limits, tlsConfig *tls.Config, log logr.Logger) *HTTPServer {
	cl := &connLimiter{max: l.MaxConnections, conns: map[net.Conn]*connInfo{}}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		Protocols:         p,
		ConnContext:       cl.connContext,
		ConnState:         cl.connState,
		ErrorLog:          newErrorLog(log),
	}
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"http/1.1"}
		if tlsConfig.MinVersion < tls.VersionTLS12 {
			tlsConfig.MinVersion = tls.VersionTLS12
		}
	}
	return &HTTPServer{srv: srv, conns: cl, tls: tlsConfig}
}

// Serve accepts connections on ln until Shutdown.
func (s *HTTPServer) Serve(ln net.Listener) error {
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return s.srv.Serve(ln)
}

// Shutdown stops the server gracefully (http.Server.Shutdown).
func (s *HTTPServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes every connection now.
func (s *HTTPServer) Close() error { return s.srv.Close() }

// Conns is how many connections are open, and how many the limit has
// closed so far.
func (s *HTTPServer) Conns() (open int, shed int64) { return s.conns.stats() }

// connLimiter keeps at most max connections open. It runs from
// http.Server's hooks: ConnContext when a connection is accepted,
// ConnState as it changes, and markRead once a request's body is read.
type connLimiter struct {
	max  int
	mu   sync.Mutex
	open int
	// conns are the connections not yet closed by the limiter.
	conns map[net.Conn]*connInfo
	shed  atomic.Int64
}

// connInfo is one connection. since is when it last started waiting for
// something from its client (accepted, a request's headers read, became
// idle); working is set while a handler runs with the whole request read.
type connInfo struct {
	conn    net.Conn
	since   atomic.Int64
	working atomic.Bool
	closed  bool // by the limiter; guarded by connLimiter.mu
}

type connInfoKey struct{}

func (l *connLimiter) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{conn: c}
	ci.since.Store(time.Now().UnixNano())
	l.mu.Lock()
	l.conns[c] = ci
	l.open++
	var victim *connInfo
	if l.max > 0 && l.open > l.max {
		victim = l.victim(ci)
		victim.closed = true
		l.open--
	}
	l.mu.Unlock()
	if victim != nil {
		l.shed.Add(1)
		closeNow(victim.conn)
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// victim picks the connection to close for newest: the one that has waited
// longest for its client, among those not working on a request and with
// nothing unread from their client (one whose request has arrived but not
// yet been read is waiting for the server: closing it would punish the
// client for the server's delay). When there is none, newest itself.
// Called with l.mu held.
func (l *connLimiter) victim(newest *connInfo) *connInfo {
	var cands []*connInfo
	for _, o := range l.conns {
		if o != newest && !o.closed && !o.working.Load() {
			cands = append(cands, o)
		}
	}
	slices.SortFunc(cands, func(a, b *connInfo) int { return cmp.Compare(a.since.Load(), b.since.Load()) })
	for _, o := range cands {
		if !hasPending(o.conn) {
			return o
		}
	}
	return newest
}

// closeNow closes a connection without a TLS close_notify, which could
// wait on a client that does not read.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
}

func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive:
		// A request's headers are read; its body is still coming.
		if ci := l.info(c); ci != nil {
			ci.since.Store(time.Now().UnixNano())
		}
	case http.StateIdle:
		if ci := l.info(c); ci != nil {
			ci.working.Store(false)
			ci.since.Store(time.Now().UnixNano())
		}
	case http.StateClosed, http.StateHijacked:
		l.mu.Lock()
		if ci, ok := l.conns[c]; ok {
			delete(l.conns, c)
			if !ci.closed {
				l.open--
			}
		}
		l.mu.Unlock()
	}
}

func (l *connLimiter) info(c net.Conn) *connInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[c]
}

func (l *connLimiter) stats() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.shed.Load()
}

// markRead records that a request's body has been read: its connection is
// working and the limit will not close it.
func markRead(r *http.Request) {
	if ci, ok := r.Context().Value(connInfoKey{}).(*connInfo); ok {
		ci.working.Store(true)
	}
}

// CertificateLoader serves a certificate and key from files, reading them
// again when either file changes (checked at most every 10 seconds), so a
// renewed certificate is used without a restart.
type CertificateLoader struct {
	certFile, keyFile string
	log               logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewCertificateLoader reads the pair once and fails if it does not load.
func NewCertificateLoader(certFile, keyFile string, log logr.Logger) (*CertificateLoader, error) {
	l := &CertificateLoader{certFile: certFile, keyFile: keyFile, log: log}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *CertificateLoader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{l.certFile, l.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

func (l *CertificateLoader) load() error {
	stamp, err := l.fileStamp()
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", l.certFile, l.keyFile, err)
	}
	l.cert, l.stamp = &cert, stamp
	return nil
}

// Certificate is the loaded certificate.
func (l *CertificateLoader) Certificate() *tls.Certificate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cert
}

// GetCertificate is a tls.Config.GetCertificate.
func (l *CertificateLoader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= 10*time.Second {
		l.checked = time.Now()
		if stamp, err := l.fileStamp(); err == nil && stamp != l.stamp {
			if err := l.load(); err != nil {
				l.log.Error(err, "reloading the TLS certificate; still serving the previous one")
			} else {
				l.log.Info("reloaded the TLS certificate")
			}
		}
	}
	if l.cert == nil {
		return nil, errors.New("no TLS certificate")
	}
	return l.cert, nil
}

// fitConnectionLimit is max, lowered to half of an open-file limit.
func fitConnectionLimit(max int, fileLimit uint64) int {
	if half := fileLimit / 2; half >= 1 && uint64(max) > half {
		return int(half)
	}
	return max
}

// newErrorLog sends net/http's own messages (TLS handshake failures,
// accept errors) to log at V(1): a client can make as many as it likes.
func newErrorLog(log logr.Logger) *stdlog.Logger {
	return stdlog.New(logWriter{log.V(1)}, "", 0)
}

type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
