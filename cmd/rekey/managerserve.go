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
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// metricsServerOptions serves /metrics the way the kubebuilder scaffold
// does: HTTPS, every request authenticated by a TokenReview and authorised
// by a SubjectAccessReview (get on the non-resource URL /metrics), HTTP/1.1
// only. Plain HTTP, with neither check, only on a loopback address.
func (o *controllerOptions) metricsServerOptions(ctx context.Context) (metricsserver.Options, error) {
	opts := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsAddr == "0" {
		return opts, nil
	}
	if !o.metricsSecure {
		if o.metricsCertDir != "" {
			return opts, usageErrorf("--metrics-cert-dir needs --metrics-secure")
		}
		ok, err := loopbackListen(ctx, o.metricsAddr)
		if err != nil {
			return opts, fmt.Errorf("%w: --metrics-bind-address %s: %w", errUsage, o.metricsAddr, err)
		}
		if !ok {
			return opts, usageErrorf("--metrics-bind-address %s is not a loopback address: "+
				"plain HTTP metrics (--metrics-secure=false) are only served on loopback", o.metricsAddr)
		}
		return opts, nil
	}
	opts.SecureServing = true
	opts.FilterProvider = func(c *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
		filter, err := filters.WithAuthenticationAndAuthorization(c, hc)
		if err != nil {
			return nil, err
		}
		return func(log logr.Logger, h http.Handler) (http.Handler, error) { return filter(quietBadTokens(log), h) }, nil
	}
	// HTTP/2 is not offered (the scaffold's default, since its rapid-reset
	// and stream attacks): a scraper needs nothing beyond HTTP/1.1.
	opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) {
		c.NextProtos = []string{"http/1.1"}
		c.MinVersion = tls.VersionTLS12
	}}
	if o.metricsCertDir != "" {
		// controller-runtime falls back to a self-signed certificate when
		// the files are missing: a mistyped directory must not do that.
		for _, f := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(o.metricsCertDir, f)); err != nil {
				return opts, fmt.Errorf("%w: --metrics-cert-dir: %w", errUsage, err)
			}
		}
		opts.CertDir, opts.CertName, opts.KeyName = o.metricsCertDir, "tls.crt", "tls.key"
	}
	return opts, nil
}

// Errors controller-runtime and client-go log, with a stack trace, when a
// manager is stopped cleanly:
//   - stopMessage with "leader election lost": its own lease release,
//     reported once a stop was asked for (controller-runtime issue 3535);
//   - informerMessage: a watch that had not synced yet when stopped;
//   - anything that failed with context.Canceled: work the stop cut short
//     (a reconcile, whose page the next leader does again; an Event not
//     written).
const (
	stopMessage     = "error received after stop sequence was engaged"
	informerMessage = "failed to get informer from cache"
)

// quietCleanStop returns logger, except that once ctx is done those are
// logged as what they are then, at info level. The same errors while
// running, and any other error during the stop, stay errors.
func quietCleanStop(ctx context.Context, logger logr.Logger) logr.Logger {
	stopped := ctx.Done()
	return logr.New(&quietSink{LogSink: logger.GetSink(), quiet: func(err error, msg string) (string, bool, bool) {
		select {
		case <-stopped:
		default:
			return "", false, false
		}
		switch {
		case msg == stopMessage && err != nil && err.Error() == "leader election lost":
			return "leader election lease released on stop", false, true
		case msg == informerMessage:
			return "stopped before the informer synced", true, true
		case errors.Is(err, context.Canceled):
			return msg + ": cut short by the stop", true, true
		}
		return "", false, false
	}})
}

// authFailedMessage is what controller-runtime's metrics filter logs, as an
// error with a stack trace, for every request whose bearer token the
// apiserver does not accept (and answers 500).
const authFailedMessage = "Authentication failed"

// quietBadTokens returns logger, except that a bearer token the apiserver
// rejected is logged at level 4, as the filter logs a request without a
// token: anyone who can reach the port could otherwise write error lines
// with stack traces at the rate they send requests. Failures to ask the
// apiserver (RBAC, the apiserver away) stay errors.
func quietBadTokens(logger logr.Logger) logr.Logger {
	return logr.New(&quietSink{LogSink: logger.GetSink(), level: 4, quiet: func(err error, msg string) (string, bool, bool) {
		if msg == authFailedMessage && err != nil && err.Error() == "invalid bearer token" {
			return "Authentication failed: invalid bearer token", false, true
		}
		return "", false, false
	}})
}

// quietSink logs the errors quiet picks (ok) as info lines at level, with
// the message quiet gives and, when it says so (reason), the error as
// "reason".
type quietSink struct {
	logr.LogSink
	level int
	quiet func(err error, msg string) (m string, reason, ok bool)
}

// Init does nothing: the wrapped sink was initialised by its own logger.
func (s *quietSink) Init(logr.RuntimeInfo) {}

func (s *quietSink) Error(err error, msg string, kv ...any) {
	if m, reason, ok := s.quiet(err, msg); ok {
		if reason {
			kv = append(kv, "reason", fmt.Sprint(err))
		}
		if s.Enabled(s.level) {
			s.Info(s.level, m, kv...)
		}
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s *quietSink) WithValues(kv ...any) logr.LogSink {
	return &quietSink{LogSink: s.LogSink.WithValues(kv...), level: s.level, quiet: s.quiet}
}

func (s *quietSink) WithName(name string) logr.LogSink {
	return &quietSink{LogSink: s.LogSink.WithName(name), level: s.level, quiet: s.quiet}
}
