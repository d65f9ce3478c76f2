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
