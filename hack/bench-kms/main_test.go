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

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
)

// closesAfterHeaders is a client connection that closes itself once the
// response headers have arrived: the body read then fails as it does in
// the SDK's race, with net.ErrClosed from a local close.
type closesAfterHeaders struct {
	net.Conn
	seen []byte
}

func (c *closesAfterHeaders) Read(p []byte) (int, error) {
	if bytes.Contains(c.seen, []byte("\r\n\r\n")) {
		_ = c.Close()
	}
	n, err := c.Conn.Read(p[:min(len(p), 16)])
	c.seen = append(c.seen, p[:n]...)
	return n, err
}

// TestClientRaceIsOnlyALocalCloseAfterA200 checks the one error load
// counts instead of failing on: a 200 whose body the client's own closed
// connection could not read. A 500 read the same way, and a connection
// the server closes, still fail the run.
func TestClientRaceIsOnlyALocalCloseAfterA200(t *testing.T) {
	reEncrypt := func(t *testing.T, h http.HandlerFunc, selfClose bool) error {
		t.Helper()
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		tr := &http.Transport{DisableKeepAlives: true}
		if selfClose {
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &closesAfterHeaders{Conn: c}, nil
			}
		}
		c := awskms.New(awskms.Options{
			Region: "eu-west-2", BaseEndpoint: aws.String(srv.URL),
			Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, ""),
			RetryMaxAttempts: 1,
			HTTPClient:       &http.Client{Transport: tr},
		})
		_, err := c.ReEncrypt(context.Background(), &awskms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyId: aws.String("alias/x")})
		if err == nil {
			t.Fatal("ReEncrypt succeeded; want an error")
		}
		return err
	}
	answer := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			body := `{"__type":"KMSInternalException","message":"` + strings.Repeat("x", 4096) + `"}`
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	if err := reEncrypt(t, answer(http.StatusOK), true); !clientRace(err) {
		t.Errorf("a 200 unread through the client's closed connection: clientRace = false, want true (%v)", err)
	}
	if err := reEncrypt(t, answer(http.StatusInternalServerError), true); clientRace(err) {
		t.Errorf("a 500 unread through the client's closed connection: clientRace = true, want false (%v)", err)
	}
	hangUp := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4096")
		_, _ = io.WriteString(w, "{")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
	if err := reEncrypt(t, hangUp, false); clientRace(err) || errors.Is(err, net.ErrClosed) {
		t.Errorf("a 200 cut off by the server: clientRace = true, want false (%v)", err)
	}
}

// TestRacesFailARunAboveOneInAThousand: a server that resets every
// connection in the middle of a 200 fails the run, though net/http makes
// some of those calls look like the SDK's race; a few races in a
// thousand calls do not.
func TestRacesFailARunAboveOneInAThousand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 4096\r\n\r\n{\"KeyId\":\"")
				}
				_ = c.(*net.TCPConn).SetLinger(0) // a reset, not a close
				_ = c.Close()
			}()
		}
	}()
	c := client("http://"+ln.Addr().String(), akid, secret, nil)
	in := &awskms.ReEncryptInput{CiphertextBlob: make([]byte, 1024), DestinationKeyId: aws.String("alias/x")}
	lr := load(context.Background(), func(ctx context.Context) error { _, err := c.ReEncrypt(ctx, in); return err }, 2, 200*time.Millisecond)
	if lr.ops != 0 || lr.err() == nil {
		t.Fatalf("a server resetting every response: %d ops, %d errors, %d races, err() = %v; want no op and a failed run", lr.ops, lr.errs, lr.races, lr.err())
	}
	for _, c := range []struct {
		ops, races int
		fail       bool
	}{{10000, 0, false}, {9990, 10, false}, {9989, 11, true}, {0, 1, true}} {
		if err := (loadResult{ops: c.ops, races: c.races}).err(); (err != nil) != c.fail {
			t.Errorf("%d ops and %d races: err() = %v, want failure %v", c.ops, c.races, err, c.fail)
		}
	}
}
