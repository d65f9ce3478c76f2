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

package harness

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hang bounds a call that must return: the tests fail, rather than hang,
// when it blocks.
const hang = 30 * time.Second

func start(t *testing.T, name string, args ...string) *Process {
	t.Helper()
	p, err := StartProcess(exec.Command(name, args...), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Cmd.Process.Kill() })
	return p
}

// returns runs f and fails the test if it has not returned within hang.
func returns(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hang):
		t.Fatalf("%s blocked for %s", what, hang)
		return nil
	}
}

func receive(t *testing.T, p *Process) error {
	t.Helper()
	select {
	case err := <-p.Exited():
		return err
	case <-time.After(hang):
		t.Fatalf("Exited did not deliver in %s", hang)
		return nil
	}
}

// TestKillAfterExitedWasReceived: the caller that watched Exited (as the
// demo and the benchmark do) can still Kill and Stop the process; both
// used to wait for a second value on a channel that was never closed.
func TestKillAfterExitedWasReceived(t *testing.T) {
	p := start(t, "true")
	if err := receive(t, p); err != nil {
		t.Fatalf("exit error of true: %v", err)
	}
	if err := returns(t, "Kill", p.Kill); err != nil {
		t.Fatalf("Kill of an ended process: %v", err)
	}
	if err := returns(t, "Stop", func() error { return p.Stop(hang) }); err != nil {
		t.Fatalf("Stop of an ended process: %v", err)
	}
	// Exited is closed now: another receive does not block.
	if err := receive(t, p); err != nil {
		t.Fatalf("second receive: %v", err)
	}
}

// TestKillTwice: Kill reaps a running process and can be called again.
func TestKillTwice(t *testing.T) {
	p := start(t, "sleep", "600")
	for i := range 2 {
		if err := returns(t, "Kill", p.Kill); err != nil {
			t.Fatalf("Kill %d: %v", i+1, err)
		}
		if p.Cmd.ProcessState == nil {
			t.Fatal("Kill returned before the process was reaped")
		}
	}
	if err := receive(t, p); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("exit error %v, want killed", err)
	}
}

// TestStopTerminates: SIGTERM ends the process within the grace period and
// is not an error.
func TestStopTerminates(t *testing.T) {
	p := start(t, "sleep", "600")
	if err := returns(t, "Stop", func() error { return p.Stop(hang) }); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := receive(t, p); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Fatalf("exit error %v, want terminated by SIGTERM", err)
	}
}

// TestExitStatusIsReported: a failed exit reaches the Exited receiver and Stop.
func TestExitStatusIsReported(t *testing.T) {
	p := start(t, "sh", "-c", "exit 3")
	var ee *exec.ExitError
	if err := receive(t, p); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Exited: %v, want exit status 3", err)
	}
	if err := returns(t, "Stop", func() error { return p.Stop(hang) }); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Stop: %v, want exit status 3", err)
	}
}
