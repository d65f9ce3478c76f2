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

package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// ErrKeyFileMode means a file holding a secret (the root key, credentials)
// may be read by users other than its owner and its group, or written by
// anyone but its owner.
var ErrKeyFileMode = errors.New("key file is open to other users")

// CheckKeyFileMode checks the permissions of a file holding a secret (the
// root key; the endpoint's credentials file):
//
//   - readable, writable or executable by others (o+rwx), or writable by its
//     group (g+w): an error wrapping ErrKeyFileMode, naming the file, its
//     mode and the fix;
//   - readable by its group (g+r): no error, and a warning to show — unless
//     the group is how this process reads it (the file belongs to another
//     user and to one of this process's groups). That is the Kubernetes way
//     for a non-root container to read a Secret volume: defaultMode 0440 and
//     the pod's fsGroup.
//
// Symbolic links are followed (Kubernetes mounts Secret files as links).
func CheckKeyFileMode(path string) (warning string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	return checkMode(path, fi)
}

func checkMode(path string, fi fs.FileInfo) (string, error) {
	perm := fi.Mode().Perm()
	switch {
	case perm&0o007 != 0:
		return "", fmt.Errorf("%w: %s has mode %04o, so every user of this machine may read or change it; "+
			"run chmod 600 %s (in Kubernetes: defaultMode: 0440 on the Secret volume, with the pod's fsGroup)",
			ErrKeyFileMode, path, perm, path)
	case perm&0o020 != 0:
		return "", fmt.Errorf("%w: %s has mode %04o, so its group may change it; run chmod 600 %s",
			ErrKeyFileMode, path, perm, path)
	case perm&0o040 != 0 && !readThroughGroup(fi):
		return fmt.Sprintf("warning: %s has mode %04o, so every member of its group may read it; "+
			"run chmod 600 %s unless that group is meant to", path, perm, path), nil
	}
	return "", nil
}

// readThroughGroup reports whether the file belongs to another user and to
// one of this process's groups: then group read is what lets it read it.
func readThroughGroup(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Getuid() {
		return false
	}
	if int(st.Gid) == os.Getgid() {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, int(st.Gid))
}
