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

// Package testenv starts the envtest control plane (a real kube-apiserver
// and etcd, built by 'make envtest') for test suites, and fails with a
// message that says how to get it when it is missing.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

// Env is a running control plane with a client.
type Env struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
}

// Scheme returns a scheme with the core types and rekey's API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(rekeyv1alpha1.AddToScheme(s))
	return s
}

// ErrNoAssets means KUBEBUILDER_ASSETS does not point at the binaries.
var ErrNoAssets = errors.New("envtest binaries missing")

// Start starts kube-apiserver and etcd and installs the CRDs found in
// crdDir (relative to the calling package; "" for none).
func Start(crdDir string) (*Env, error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("%w: KUBEBUILDER_ASSETS is not set, so envtest has no kube-apiserver and etcd.\n"+
			"Run 'make envtest' once (it builds them from source, ~10 minutes the first time), then 'make test'", ErrNoAssets)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%w: %s not found in KUBEBUILDER_ASSETS=%s (%w).\nRun 'make envtest', then 'make test'", ErrNoAssets, b, assets, err)
		}
	}
	te := &envtest.Environment{}
	if crdDir != "" {
		te.CRDDirectoryPaths = []string{crdDir}
		te.ErrorIfCRDPathMissing = true
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the envtest control plane: %w (run 'make envtest' to rebuild it)", err)
	}
	s := Scheme()
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		_ = te.Stop()
		return nil, err
	}
	return &Env{Env: te, Config: cfg, Client: c, Scheme: s}, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.Env.Stop() }

// Run is a TestMain body: it starts the control plane, runs the tests and
// stops it, reporting failures on stderr.
func Run(m *testing.M, crdDir string, set func(*Env)) int {
	env, err := Start(crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}()
	set(env)
	return m.Run()
}

// Namespace creates a fresh namespace for one test.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rekey-test-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}
