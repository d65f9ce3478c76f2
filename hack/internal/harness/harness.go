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

// Package harness is what the demo and the scale benchmark share: a local
// control plane with a kubeconfig for kubectl and rekey, and child processes
// that are always stopped.
package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rekey-dev/rekey/internal/testenv"
)

// ControlPlane is kube-apiserver and etcd (from KUBEBUILDER_ASSETS) with an
// admin kubeconfig.
type ControlPlane struct {
	*testenv.Env
	Kubeconfig string
	Kubectl    string
}

// Start starts the control plane; its kubeconfig goes into dir.
func Start(dir string) (*ControlPlane, error) {
	env, err := testenv.Start("")
	if err != nil {
		return nil, err
	}
	user, err := env.Env.AddUser(envtest.User{Name: "rekey-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &ControlPlane{Env: env, Kubeconfig: path, Kubectl: filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")}, nil
}

// Environ is the process environment with this control plane's kubeconfig.
func (cp *ControlPlane) Environ() []string { return append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig) }

// Command returns a command that talks to this control plane.
func (cp *ControlPlane) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = cp.Environ()
	return cmd
}

// Echo runs a command, printing it and its output indented; a failure
// returns its output in the error.
func (cp *ControlPlane) Echo(name string, args ...string) error {
	fmt.Printf("    $ %s %s\n", filepath.Base(name), strings.Join(args, " "))
	out, err := cp.Command(name, args...).CombinedOutput()
	fmt.Print(Indent(string(out)))
	if err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), args[0], err)
	}
	return nil
}

// Indent indents every line by four spaces.
func Indent(s string) string {
	if s = strings.TrimRight(s, "\n"); s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// Process is a child process whose output goes to a log file.
type Process struct {
	Cmd *exec.Cmd
	// exited receives the exit error once and is then closed.
	exited chan error
	// done is closed once the process has been waited for; err is its
	// exit error, set before done is closed.
	done chan struct{}
	err  error
	log  *os.File
}

// StartProcess starts cmd with stdout and stderr in logPath.
func StartProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	p := &Process{Cmd: cmd, exited: make(chan error, 1), done: make(chan struct{}), log: log}
	go func() {
		p.err = cmd.Wait()
		_ = log.Close()
		close(p.done)
		p.exited <- p.err
		close(p.exited)
	}()
	return p, nil
}

// Exited delivers the exit error (nil for a clean exit) to the first
// receiver when the process ends and is then closed, so later receives
// return nil at once. Stop and Kill do not depend on it.
func (p *Process) Exited() <-chan error { return p.exited }

// Stop sends SIGTERM and waits; after the grace period it kills. Ending by
// a signal is not an error; an exit status other than 0 is.
func (p *Process) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil && !strings.Contains(p.err.Error(), "signal") {
			return p.err
		}
		return nil
	case <-time.After(grace):
		return p.Kill()
	}
}

// Kill sends SIGKILL and waits for the process to be gone. Being killed is
// the expected outcome, and so is a process that had already ended: only a
// failure to send the signal to a live process is an error.
func (p *Process) Kill() error {
	err := p.Cmd.Process.Kill()
	<-p.done
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
