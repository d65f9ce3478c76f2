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

// Command demo is 'make demo': the main job end to end on a local control
// plane. It starts kube-apiserver and etcd (envtest), installs the CRD with
// kubectl, creates two keys in the embedded engine (keystore in a Secret),
// writes annotated Secrets encrypted under the old key, applies a
// KeyRotation with kubectl, runs 'rekey controller', shows progress, then
// decrypts every value under the new key and checks it is what was written.
// It cleans up after itself and leaves nothing running.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/hack/internal/harness"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const (
	namespace   = "billing"
	opNamespace = "rekey-system"
	keystoreRef = "k8s://" + opNamespace + "/rekey-keystore"
)

func main() {
	n := flag.Int("n", 300, "Secrets to write (3 encrypted values each)")
	rekeyBin := flag.String("rekey", "bin/rekey", "the rekey binary")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *rekeyBin, *n)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo FAILED:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context, rekeyBin string, n int) error {
	rekeyBin, err := filepath.Abs(rekeyBin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rekey-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	step("Starting a local control plane (kube-apiserver and etcd from KUBEBUILDER_ASSETS)")
	t0 := time.Now()
	cp, err := harness.Start(dir)
	if err != nil {
		return err
	}
	defer func() {
		step("Cleaning up: stopping the control plane")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	fmt.Printf("    up in %.1fs; kubeconfig %s\n", time.Since(t0).Seconds(), cp.Kubeconfig)
	kubectl, sh, env := cp.Kubectl, cp, cp.Env

	step("Installing the KeyRotation CRD with kubectl")
	if err := sh.Echo(kubectl, "apply", "-f", "config/crd/bases/"); err != nil {
		return err
	}
	if err := sh.Echo(kubectl, "wait", "--for=condition=Established", "crd/keyrotations.rekey.dev", "--timeout=60s"); err != nil {
		return err
	}
	if err := sh.Echo(kubectl, "create", "namespace", opNamespace); err != nil {
		return err
	}
	if err := sh.Echo(kubectl, "create", "namespace", namespace); err != nil {
		return err
	}

	step("Creating two keys in the embedded engine (keystore: Secret %s, root key kept outside it)", keystoreRef)
	rootKey := filepath.Join(dir, "root.key")
	enc, err := keystore.GenerateRootKey()
	if err != nil {
		return err
	}
	if err := os.WriteFile(rootKey, []byte(enc+"\n"), 0o600); err != nil {
		return err
	}
	ks := []string{"--keystore", keystoreRef, "--root-key-file", rootKey}
	if err := sh.Echo(rekeyBin, append([]string{"keystore", "init"}, ks...)...); err != nil {
		return err
	}
	for _, alias := range []string{"alias/billing-2025", "alias/billing-2026"} {
		args := append([]string{"key", "create", "--alias", alias, "--description", "demo " + alias, "--allow-namespace", namespace}, ks...)
		if err := sh.Echo(rekeyBin, args...); err != nil {
			return err
		}
	}

	step("Writing %d Secrets with 3 values each, encrypted under alias/billing-2025", n)
	root, err := keystore.ParseRootKey([]byte(enc))
	if err != nil {
		return err
	}
	engine, err := kms.New(ctx, kms.Options{Store: keystore.NewSecret(env.Client, opNamespace, "rekey-keystore", root)})
	if err != nil {
		return err
	}
	written, err := writeSecrets(ctx, env.Client, engine, n)
	if err != nil {
		return err
	}
	fmt.Printf("    %d Secrets, %d blobs\n", n, len(written))

	step("Starting the operator: rekey controller (logs in %s)", filepath.Join(dir, "controller.log"))
	controller, err := harness.StartProcess(cp.Command(rekeyBin, append([]string{"controller", "--metrics-bind-address", "0",
		"--health-probe-bind-address", "0"}, ks...)...), filepath.Join(dir, "controller.log"))
	if err != nil {
		return err
	}
	defer func() {
		step("Cleaning up: stopping the operator")
		if err := controller.Stop(15 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "the operator exited with:", err)
		}
	}()

	step("Applying a KeyRotation with kubectl")
	manifest := filepath.Join(dir, "keyrotation.yaml")
	if err := os.WriteFile(manifest, []byte(keyRotationYAML), 0o600); err != nil {
		return err
	}
	fmt.Print(harness.Indent(keyRotationYAML))
	if err := sh.Echo(kubectl, "apply", "-f", manifest); err != nil {
		return err
	}

	step("Progress")
	applied := time.Now()
	kr, err := watchProgress(ctx, env.Client, controller.Exited())
	took := time.Since(applied)
	if err != nil {
		return err
	}
	if err := sh.Echo(kubectl, "get", "keyrotations", "-n", namespace); err != nil {
		return err
	}
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded {
		return fmt.Errorf("the rotation ended %s: %+v", kr.Status.Phase, kr.Status.Failures)
	}

	step("Verifying: decrypting every value and comparing it with what was written")
	if err := verify(ctx, env.Client, engine, written); err != nil {
		return err
	}
	fmt.Printf("    %d Secrets (%d blobs) rotated and verified in %.2fs from kubectl apply; SourceKeysDrained=%s\n",
		kr.Status.Secrets.Rotated, kr.Status.Blobs.Rotated, took.Seconds(), condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained).Status)
	fmt.Println("\nDEMO OK")
	return nil
}

const keyRotationYAML = `apiVersion: rekey.dev/v1alpha1
kind: KeyRotation
metadata:
  name: billing-2026q4
  namespace: billing
spec:
  sourceKeyIds: ["alias/billing-2025"]
  destinationKeyId: alias/billing-2026
  sourceEncryptionContext: {app: billing}
  secretSelector: {matchLabels: {team: billing}}
  maxConcurrency: 8
`

// value is one blob the demo wrote, with the plaintext it holds.
type value struct {
	secret, key, plaintext string
}

func writeSecrets(ctx context.Context, c client.Client, e *kms.Engine, n int) ([]value, error) {
	ec := map[string]string{"app": "billing"}
	var written []value
	for i := range n {
		name := fmt.Sprintf("billing-db-%04d", i)
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"team": "billing"},
				Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "password,apiToken,dsn"}},
			Data: map[string][]byte{},
		}
		for _, k := range []string{"password", "apiToken", "dsn"} {
			pt := fmt.Sprintf("%s-%s-%d", k, name, time.Now().UnixNano())
			out, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: "alias/billing-2025", Plaintext: []byte(pt), EncryptionContext: ec})
			if err != nil {
				return nil, err
			}
			s.Data[k] = out.CiphertextBlob
			written = append(written, value{name, k, pt})
		}
		if err := c.Create(ctx, s); err != nil {
			return nil, err
		}
	}
	return written, nil
}

func watchProgress(ctx context.Context, c client.Client, exited <-chan error) (*rekeyv1alpha1.KeyRotation, error) {
	kr := &rekeyv1alpha1.KeyRotation{}
	last := ""
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "billing-2026q4"}, kr); err != nil {
			return nil, err
		}
		st := kr.Status
		drained := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained)
		line := fmt.Sprintf("    %-9s Secrets %-9s blobs re-encrypted %-5d failed %d  SourceKeysDrained %s",
			st.Phase, st.Progress, st.Blobs.Rotated, st.Secrets.Failed, drained.Status)
		if line != last {
			fmt.Printf("%s  (%s)\n", line, time.Now().Format("15:04:05.000"))
			last = line
		}
		// The run ends, then a read of every Secret decides SourceKeysDrained.
		if (st.Phase == rekeyv1alpha1.PhaseSucceeded || st.Phase == rekeyv1alpha1.PhaseFailed) && drained.Status != metav1.ConditionUnknown {
			fmt.Printf("    SourceKeysDrained=%s: %s\n", drained.Status, drained.Message)
			return kr, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the operator exited early (see its log): %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the rotation did not finish in 5 minutes")
		}
	}
}

func verify(ctx context.Context, c client.Client, e *kms.Engine, written []value) error {
	if err := e.Refresh(ctx); err != nil {
		return err
	}
	dest, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: "alias/billing-2026"})
	if err != nil {
		return err
	}
	ok := 0
	for _, v := range written {
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v.secret}, s); err != nil {
			return err
		}
		out, err := e.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: s.Data[v.key], EncryptionContext: map[string]string{"app": "billing"}})
		if err != nil {
			return fmt.Errorf("%s/%s: %w", v.secret, v.key, err)
		}
		if out.KeyID != dest.KeyMetadata.Arn {
			return fmt.Errorf("%s/%s is under %s, not alias/billing-2026", v.secret, v.key, out.KeyID)
		}
		if string(out.Plaintext) != v.plaintext {
			return fmt.Errorf("%s/%s does not decrypt to what was written", v.secret, v.key)
		}
		ok++
	}
	fmt.Printf("    %d/%d values decrypt under alias/billing-2026 (%s) to exactly what was written\n", ok, len(written), dest.KeyMetadata.Arn)
	return nil
}

// condition returns a condition of kr, Unknown when it is not set.
func condition(kr *rekeyv1alpha1.KeyRotation, typ string) metav1.Condition {
	for _, c := range kr.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown}
}
