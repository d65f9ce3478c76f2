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
	"os"
	"testing"

	"github.com/rekey-dev/rekey/internal/testenv"
)

// env is a real kube-apiserver and etcd for the tests of --keystore k8s://.
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, "", func(e *testenv.Env) { env = e }))
}
