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

// Command rekey is the operator and its command line: one binary, with
// subcommands.
//
//	rekey controller     run the KeyRotation manager
//	rekey key ...        manage keys in a keystore
//	rekey keystore ...   create, back up, verify and restore a keystore
//	rekey encrypt        encrypt stdin under a key
//	rekey decrypt        decrypt a blob from stdin
//	rekey reencrypt      re-encrypt a blob under another key or version
//	rekey secret ...     write (or apply) a Secret manifest of encrypted values
//	rekey manifests ...  re-encrypt the blobs of Secret manifests in files
//	rekey status         show KeyRotations; rekey rerun starts one again
//	rekey kms serve      serve the engine over the AWS KMS JSON protocol
//	rekey completion     print a shell completion script
//	rekey version        print the version (also rekey --version)
//
// The command line is built with cobra (cli.go): flags go anywhere among
// the arguments, and a wrong argument is a usage error (exit status 2).
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...": make
// build and make docker-build stamp `git describe --tags --always --dirty`,
// and so does the Dockerfile through its VERSION argument. An unstamped
// binary reports the module version that go install recorded, else "dev".
var version = "dev"

// moduleVersion returns stamped unless it is the unstamped "dev" and the
// build info holds a released module version (go install ...@v1.2.3).
func moduleVersion(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "dev" || !ok || info.Main.Version == "" || info.Main.Version == "(devel)" {
		return stamped
	}
	return info.Main.Version
}

func main() {
	info, ok := debug.ReadBuildInfo()
	version = moduleVersion(version, info, ok)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
