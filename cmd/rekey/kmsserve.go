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
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/rekey-dev/rekey/internal/kms/awsapi"
)

const kmsUsage = `usage: rekey kms serve --listen ADDR --keystore FILE --root-key-file FILE --credentials-file FILE

Serves the embedded engine over the AWS KMS JSON protocol, so AWS SDKs and
the AWS CLI work against it (endpoint URL http://ADDR). Every request must be
signed (SigV4) with a pair from the credentials file, one
"ACCESS_KEY_ID SECRET_ACCESS_KEY" a line.`

func runKMS(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(stderr, kmsUsage)
		if len(args) > 0 && (isHelp(args[0])) {
			return nil
		}
		return fmt.Errorf("%w: the only subcommand is serve", errUsage)
	}
	return runKMSServe(ctx, args[1:], stdin, stdout, stderr)
}

func runKMSServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var ef engineFlags
	fs := newFlagSet("kms serve", stderr)
	ef.bind(fs)
	listen := fs.String("listen", "127.0.0.1:8300", "address to listen on (loopback by default; port 0 picks a free one)")
	credsFile := fs.String("credentials-file", "", "file of ACCESS_KEY_ID SECRET_ACCESS_KEY pairs whose signatures are accepted (required)")
	refresh := fs.Duration("refresh-interval", time.Second, "how often to pick up keystore changes made by other processes")
	gcPercent := fs.Int("gc-percent", 400, "Go GC target for this server when GOGC is not set: its live heap is a few MiB, "+
		"so a higher target trades a few MiB for less CPU per request (docs/benchmarks.md)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, kmsUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *credsFile == "" {
		return fmt.Errorf("%w: --credentials-file is required", errUsage)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gcPercent)
	}
	creds, err := awsapi.ReadCredentialsFile(*credsFile)
	if err != nil {
		return err
	}
	e, err := ef.open(ctx)
	if err != nil {
		return err
	}
	log := zap.New(zap.WriteTo(stderr))
	ctrl.SetLogger(log)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           awsapi.New(e, awsapi.Options{Credentials: creds, Log: log.WithName("kms")}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stdout, "rekey kms: listening on http://%s\n", ln.Addr())

	go func() {
		t := time.NewTicker(*refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
					log.Error(err, "refreshing the keystore")
				}
			}
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(stdout, "rekey kms: stopped")
	return nil
}
