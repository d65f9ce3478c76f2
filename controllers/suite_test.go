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

package controllers

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rekey-dev/rekey/internal/testenv"
)

// The envtest suite: one real kube-apiserver and etcd for every test of the
// package, with the CRDs of config/crd installed.
var (
	env       *testenv.Env
	k8sClient client.Client
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, filepath.Join("..", "config", "crd", "bases"), func(e *testenv.Env) {
		env, k8sClient = e, e.Client
	}))
}

func newNamespace(t *testing.T) string { return env.Namespace(t) }
