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

// Command test-image is 'make test-image': it runs the operator image the way
// a cluster runs it, against a local control plane (envtest's kube-apiserver
// and etcd), and fails unless a rotation completes.
//
//   - The image: user 65532:65532, entrypoint /rekey, and `rekey version` and
//     `rekey --version` print the version the Makefile stamped.
//   - The keystore is created and two keys are made by the image's own CLI.
//   - The operator runs from the image on the host network with the
//     kubeconfig and the root key mounted read-only (the key root:65532, mode
//     0440, as a Secret volume with fsGroup 65532 mounts it), a read-only
//     root file system and a memory limit, as the Deployment runs it, with
//     leader election, and its probes and metrics on 127.0.0.1. A KeyRotation
//     over annotated Secrets must end Succeeded, every value decrypting under
//     the new key to what was written; /metrics must refuse a request without
//     a token and serve one from a ServiceAccount allowed to read it; and the
//     operator must stop cleanly.
//   - `rekey kms serve` runs from the same image on 127.0.0.1, over the same
//     keystore, and the AWS SDK's KMS client calls it: ListKeys, DescribeKey,
//     Encrypt, Decrypt and ReEncrypt, checked against the engine in this
//     process.
//
// The engine is CONTAINER_TOOL (hack/container-tool.sh: docker, else podman).
// It needs root, to give the mounted files to the image's group as a kubelet
// would. Containers, files and the control plane are removed at the end.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/hack/internal/harness"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const (
	namespace   = "billing"
	opNamespace = "rekey-system"
	keystoreRef = "k8s://" + opNamespace + "/rekey-keystore"
	oldKey      = "alias/billing-2025"
	newKey      = "alias/billing-2026"
	// Where the containers see the mounted files.
	mountDir = "/var/run/rekey"
	// The image's user; the mounted files belong to its group, as a Secret
	// volume's files belong to the pod's fsGroup.
	imageUser = "65532:65532"
	imageGID  = 65532
	// The kms serve credentials the SDK client signs with.
	accessKeyID     = "AKIMAGETEST"
	secretAccessKey = "image-test-secret"
)

var encryptionContext = map[string]string{"app": "billing"}

type options struct {
	image, engine, version string
	n                      int
	keep                   bool
}

func main() {
	var o options
	flag.StringVar(&o.image, "image", "rekey:latest", "the image to test")
	flag.StringVar(&o.engine, "engine", envOr("CONTAINER_TOOL", "./hack/container-tool.sh"), "the container engine command (docker, podman or hack/container-tool.sh)")
	flag.StringVar(&o.version, "version", "", "what `rekey version` must print after \"rekey \" (empty: not checked)")
	flag.IntVar(&o.n, "n", 30, "annotated Secrets to rotate (2 encrypted values each)")
	flag.BoolVar(&o.keep, "keep", false, "leave the containers and their logs in place after a failure")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	start := time.Now()
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ntest-image FAILED after %.1fs: %v\n", time.Since(start).Seconds(), err)
		os.Exit(1)
	}
	fmt.Printf("\nTEST-IMAGE OK in %.1fs\n", time.Since(start).Seconds())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var last = time.Now()

// step prints a heading with the time the previous step took.
func step(format string, args ...any) {
	fmt.Printf("    (%.1fs)\n\n==> "+format+"\n", append([]any{time.Since(last).Seconds()}, args...)...)
	last = time.Now()
}

// rig is what the steps share: the engine, the image with its mounts, and
// the control plane with an engine over the same keystore.
type rig struct {
	e     *engine
	image string
	// mounts are the engine's arguments that give a container the host
	// network and the mounted files; keystore the rekey flags that open the
	// keystore through them.
	mounts, keystore []string
	c                client.Client
	kms              *kms.Engine
	written          []value
}

// cli runs `rekey ARGS... --keystore ... --root-key-file ...` from the image.
func (r *rig) cli(args ...string) (string, error) {
	argv := append(append(append([]string{"run", "--rm"}, r.mounts...), r.image), args...)
	return r.e.run(append(argv, r.keystore...)...)
}

// start starts `rekey ARGS... --keystore ...` from the image in a container
// named name, in the background, with extra engine arguments.
func (r *rig) start(name string, extra []string, args ...string) error {
	argv := append(append(append(append([]string{"run", "-d", "--name", name}, extra...), r.mounts...), r.image), args...)
	_, err := r.e.run(append(argv, r.keystore...)...)
	return err
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the mounted kubeconfig and key files are given to the image's group (65532), as a kubelet does")
	}
	dir, err := os.MkdirTemp("", "rekey-test-image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	e := &engine{cmd: o.engine, prefix: "rekey-test-image-" + strconv.Itoa(os.Getpid())}
	defer e.removeAll(o.keep)

	fmt.Printf("==> The image %s (engine: %s)\n", o.image, o.engine)
	if err := checkImage(e, o); err != nil {
		return err
	}

	step("Starting a local control plane (kube-apiserver and etcd from KUBEBUILDER_ASSETS)")
	cp, err := harness.Start(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	fmt.Printf("    %s\n", cp.Config.Host)
	r, err := setUp(ctx, cp, dir, e, o)
	if err != nil {
		return err
	}
	if err := testOperator(ctx, r); err != nil {
		return err
	}
	if err := testKMSServe(ctx, r); err != nil {
		return err
	}
	step("Cleaning up")
	return nil
}

// setUp installs the CRD, writes the mounted files, creates the keystore and
// two keys with the image's CLI, and writes the annotated Secrets.
func setUp(ctx context.Context, cp *harness.ControlPlane, dir string, e *engine, o options) (*rig, error) {
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{"config/crd/bases"}, ErrorIfPathMissing: true}); err != nil {
		return nil, fmt.Errorf("installing the CRD: %w", err)
	}
	for _, ns := range []string{opNamespace, namespace} {
		if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}

	step("Mounts: kubeconfig and root key, owned root:%d with mode 0440 (a Secret volume with fsGroup %d)", imageGID, imageGID)
	enc, err := keystore.GenerateRootKey()
	if err != nil {
		return nil, err
	}
	kubeconfig, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return nil, err
	}
	mounts, err := mountFiles(dir, map[string][]byte{
		"kubeconfig":  kubeconfig,
		"root.key":    []byte(enc + "\n"),
		"credentials": []byte(accessKeyID + " " + secretAccessKey + "\n"),
	})
	if err != nil {
		return nil, err
	}
	r := &rig{e: e, image: o.image, c: cp.Client,
		mounts:   append([]string{"--network=host", "-e", "KUBECONFIG=" + mountDir + "/kubeconfig"}, mounts...),
		keystore: []string{"--keystore", keystoreRef, "--root-key-file", mountDir + "/root.key"}}

	step("Creating the keystore and two keys with the image's CLI")
	out, err := r.cli("keystore", "init")
	if err != nil {
		return nil, err
	}
	fmt.Print(harness.Indent(out))
	for _, alias := range []string{oldKey, newKey} {
		out, err := r.cli("key", "create", "--alias", alias, "--allow-namespace", namespace)
		if err != nil {
			return nil, err
		}
		fmt.Print(harness.Indent(out))
	}
	root, err := keystore.ParseRootKey([]byte(enc))
	if err != nil {
		return nil, err
	}
	if r.kms, err = kms.New(ctx, kms.Options{Store: keystore.NewSecret(cp.Client, opNamespace, "rekey-keystore", root)}); err != nil {
		return nil, err
	}

	step("Writing %d annotated Secrets, 2 values each under %s", o.n, oldKey)
	if r.written, err = writeSecrets(ctx, cp.Client, r.kms, o.n); err != nil {
		return nil, err
	}
	return r, nil
}

// testOperator runs the operator from the image until a rotation completes.
func testOperator(ctx context.Context, r *rig) error {
	probe, err := freePort()
	if err != nil {
		return err
	}
	metrics, err := freePort()
	if err != nil {
		return err
	}
	step("Starting the operator from the image (host network, read-only root, 256 MiB memory limit; probes on 127.0.0.1:%d, metrics on 127.0.0.1:%d)", probe, metrics)
	controller := r.e.prefix + "-controller"
	if err := r.start(controller, []string{"--read-only", "--memory", "256m"}, "controller", "--leader-elect", "--leader-election-namespace", opNamespace,
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(metrics), "--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(probe)); err != nil {
		return err
	}
	if err := waitReady(ctx, r.e, controller, fmt.Sprintf("http://127.0.0.1:%d/readyz", probe)); err != nil {
		return err
	}

	step("Applying a KeyRotation and waiting for it")
	kr, err := rotate(ctx, r.e, r.c, controller)
	if err != nil {
		return err
	}
	fmt.Printf("    phase %s: %d Secrets, %d blobs rotated; SourceKeysDrained=%s\n", kr.Status.Phase,
		kr.Status.Secrets.Rotated, kr.Status.Blobs.Rotated, condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained).Status)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded {
		return fmt.Errorf("the rotation ended %s: %+v", kr.Status.Phase, kr.Status.Failures)
	}
	if err := verify(ctx, r.c, r.kms, r.written); err != nil {
		return err
	}

	step("Reading /metrics over HTTPS, with and without a token the apiserver accepts")
	if err := checkMetrics(ctx, r.c, fmt.Sprintf("https://127.0.0.1:%d/metrics", metrics)); err != nil {
		return err
	}

	step("Stopping the operator (SIGTERM)")
	logs, err := r.e.stop(controller)
	if err != nil {
		return err
	}
	for _, want := range []string{"Go memory limit set from the cgroup's memory limit", "Successfully acquired lease"} {
		if !strings.Contains(logs, want) {
			return fmt.Errorf("the operator's log lacks %q:\n%s", want, harness.Indent(logs))
		}
	}
	errs := errorLines(logs)
	if strings.Contains(errs, "leader election lost") {
		return fmt.Errorf("the operator logged an error on a clean stop:\n%s", harness.Indent(errs))
	}
	fmt.Println("    exit status 0, no \"leader election lost\" error; its log has the cgroup memory limit and the acquired lease")
	if errs != "" {
		fmt.Printf("    NOTE: the operator logged errors, although the rotation succeeded and it stopped cleanly:\n%s", harness.Indent(errs))
	}
	return nil
}

// testKMSServe runs rekey kms serve from the image and calls it with the
// AWS SDK.
func testKMSServe(ctx context.Context, r *rig) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	step("Starting rekey kms serve from the image on 127.0.0.1:%d (read-only root), over the same keystore", port)
	server := r.e.prefix + "-kms"
	if err := r.start(server, []string{"--read-only"}, "kms", "serve", "--listen", "127.0.0.1:"+strconv.Itoa(port),
		"--credentials-file", mountDir+"/credentials"); err != nil {
		return err
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(ctx, r.e, server, endpoint); err != nil {
		return err
	}
	if err := callKMS(ctx, endpoint, r.kms, r.written[0]); err != nil {
		return err
	}
	logs, err := r.e.stop(server)
	if err != nil {
		return err
	}
	for _, op := range []string{"ListKeys", "DescribeKey", "Encrypt", "Decrypt", "ReEncrypt"} {
		if !strings.Contains(logs, `"operation":"`+op+`"`) {
			return fmt.Errorf("the kms serve audit log has no %s line:\n%s", op, harness.Indent(logs))
		}
	}
	fmt.Println("    exit status 0; its audit log has a line for each call")
	return nil
}

// checkImage checks the image's user, entrypoint and version.
func checkImage(e *engine, o options) error {
	out, err := e.run("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}} {{.Size}}", o.image)
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != imageUser || f[1] != `["/rekey"]` {
		return fmt.Errorf("image config %q: want user %s and entrypoint [\"/rekey\"]", strings.TrimSpace(out), imageUser)
	}
	size, _ := strconv.ParseInt(f[2], 10, 64)
	fmt.Printf("    user %s, entrypoint %s, %.1f MB\n", f[0], f[1], float64(size)/1e6)
	for _, arg := range []string{"version", "--version"} {
		out, err := e.run("run", "--rm", o.image, arg)
		if err != nil {
			return err
		}
		fmt.Printf("    $ rekey %s\n%s", arg, harness.Indent(out))
		if o.version != "" && out != "rekey "+o.version+"\n" {
			return fmt.Errorf("rekey %s printed %q, want %q", arg, out, "rekey "+o.version)
		}
	}
	return nil
}

// mountFiles writes the files into dir/mount, owned root:65532 with mode
// 0440, and returns the engine's -v arguments that mount them read-only.
func mountFiles(dir string, files map[string][]byte) ([]string, error) {
	d := filepath.Join(dir, "mount")
	if err := os.Mkdir(d, 0o700); err != nil {
		return nil, err
	}
	var args []string
	for name, b := range files {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
		if err := os.Chown(p, 0, imageGID); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, 0o440); err != nil {
			return nil, err
		}
		args = append(args, "-v", p+":"+mountDir+"/"+name+":ro")
	}
	return args, nil
}

// engine runs the container engine; every container it names starts with
// prefix, and removeAll removes them.
type engine struct {
	cmd, prefix string
	names       []string
}

// run runs the engine and returns its stdout; a failure includes stderr.
func (e *engine) run(args ...string) (string, error) {
	if len(args) > 2 && args[0] == "run" && args[1] == "-d" {
		e.names = append(e.names, args[3]) // run -d --name NAME
	}
	cmd := exec.Command(e.cmd, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", e.cmd, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// running reports whether the container is running, with its log if not.
func (e *engine) running(name string) (bool, string) {
	out, err := e.run("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name)
	if err != nil {
		return false, err.Error()
	}
	if strings.HasPrefix(out, "true") {
		return true, ""
	}
	logs, _ := e.logs(name)
	return false, fmt.Sprintf("%s exited (running, exit code: %s); its log:\n%s", name, strings.TrimSpace(out), harness.Indent(logs))
}

func (e *engine) logs(name string) (string, error) {
	cmd := exec.Command(e.cmd, "logs", name)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stop stops the container with SIGTERM and fails unless it exits 0 within
// its grace period; it returns the container's log.
func (e *engine) stop(name string) (string, error) {
	t0 := time.Now()
	if _, err := e.run("stop", "--time", "30", name); err != nil {
		return "", err
	}
	took := time.Since(t0)
	code, err := e.run("inspect", "--format", "{{.State.ExitCode}}", name)
	if err != nil {
		return "", err
	}
	logs, err := e.logs(name)
	if err != nil {
		return "", fmt.Errorf("%s logs: %w", name, err)
	}
	if strings.TrimSpace(code) != "0" {
		return logs, fmt.Errorf("%s exited %s after SIGTERM (%.1fs); its log:\n%s", name, strings.TrimSpace(code), took.Seconds(), harness.Indent(logs))
	}
	fmt.Printf("    %s stopped in %.1fs\n", name, took.Seconds())
	return logs, nil
}

// removeAll removes the containers this run started (unless keep is set).
func (e *engine) removeAll(keep bool) {
	for _, name := range e.names {
		if keep {
			fmt.Printf("    kept container %s (-keep)\n", name)
			continue
		}
		if out, err := e.run("rm", "-f", name); err != nil {
			fmt.Fprintf(os.Stderr, "removing %s: %v %s\n", name, err, out)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits until url answers (any status for the KMS endpoint, 200
// for a probe) while the container keeps running.
func waitReady(ctx context.Context, e *engine, name, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		resp, err := hc.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK || !strings.HasSuffix(url, "/readyz") {
				fmt.Printf("    %s answers %d\n", url, resp.StatusCode)
				return nil
			}
		}
		if i%10 == 9 {
			if ok, why := e.running(name); !ok {
				return errors.New(why)
			}
		}
		if time.Now().After(deadline) {
			logs, _ := e.logs(name)
			return fmt.Errorf("%s did not answer in 2 minutes (%w); its log:\n%s", url, err, harness.Indent(logs))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkMetrics reads the operator's /metrics (HTTPS, self-signed): refused
// without a token, served to a ServiceAccount allowed to get /metrics.
func checkMetrics(ctx context.Context, c client.Client, url string) error {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the operator's self-signed certificate
	get := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	code, _, err := get("")
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if code != http.StatusUnauthorized && code != http.StatusForbidden {
		return fmt.Errorf("GET %s without a token: %d, want 401 or 403", url, code)
	}
	fmt.Printf("    without a token: %d\n", code)

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "metrics-scraper", Namespace: opNamespace}}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "rekey-test-image-metrics"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rekey-test-image-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}}}
	for _, o := range []client.Object{sa, role, binding} {
		if err := c.Create(ctx, o); err != nil {
			return err
		}
	}
	tr := &authenticationv1.TokenRequest{}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return fmt.Errorf("requesting a token for %s: %w", sa.Name, err)
	}
	code, body, err := get(tr.Status.Token)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s as %s: %d, want 200: %s", url, sa.Name, code, body)
	}
	for _, want := range []string{"rekey_blobs_reencrypted_total", "rekey_keyrotation_status_condition"} {
		if !strings.Contains(body, want) {
			return fmt.Errorf("GET %s: no %s in:\n%s", url, want, body)
		}
	}
	fmt.Printf("    as ServiceAccount %s/%s (allowed get /metrics): 200, with rekey's metrics\n", sa.Namespace, sa.Name)
	return nil
}

// value is one blob written, with the plaintext it holds.
type value struct {
	secret, key, plaintext string
}

func writeSecrets(ctx context.Context, c client.Client, e *kms.Engine, n int) ([]value, error) {
	var written []value
	for i := range n {
		name := fmt.Sprintf("billing-db-%03d", i)
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"team": "billing"},
				Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: "password,dsn"}},
			Data: map[string][]byte{"plain": []byte("not encrypted, left alone")},
		}
		for _, k := range []string{"password", "dsn"} {
			pt := fmt.Sprintf("%s of %s", k, name)
			out, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: oldKey, Plaintext: []byte(pt), EncryptionContext: encryptionContext})
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

// rotate applies a KeyRotation and waits until it has ended and its
// SourceKeysDrained condition is decided.
func rotate(ctx context.Context, e *engine, c client.Client, controller string) (*rekeyv1alpha1.KeyRotation, error) {
	kr := &rekeyv1alpha1.KeyRotation{
		ObjectMeta: metav1.ObjectMeta{Name: "billing-2026", Namespace: namespace},
		Spec: rekeyv1alpha1.KeyRotationSpec{
			SourceKeyIDs:            []string{oldKey},
			DestinationKeyID:        newKey,
			SourceEncryptionContext: encryptionContext,
			SecretSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}},
		},
	}
	if err := c.Create(ctx, kr); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for i := 0; ; i++ {
		if err := c.Get(ctx, client.ObjectKeyFromObject(kr), kr); err != nil {
			return nil, err
		}
		st := kr.Status
		if (st.Phase == rekeyv1alpha1.PhaseSucceeded || st.Phase == rekeyv1alpha1.PhaseFailed) &&
			condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained).Status != metav1.ConditionUnknown {
			return kr, nil
		}
		if i%20 == 19 {
			if ok, why := e.running(controller); !ok {
				return nil, errors.New(why)
			}
		}
		if time.Now().After(deadline) {
			logs, _ := e.logs(controller)
			return nil, fmt.Errorf("the rotation did not end in 3 minutes (phase %q); the operator's log:\n%s", st.Phase, harness.Indent(logs))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify checks that every value decrypts under the new key to what was
// written.
func verify(ctx context.Context, c client.Client, e *kms.Engine, written []value) error {
	dest, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: newKey})
	if err != nil {
		return err
	}
	for _, v := range written {
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v.secret}, s); err != nil {
			return err
		}
		out, err := e.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: s.Data[v.key], EncryptionContext: encryptionContext})
		if err != nil {
			return fmt.Errorf("%s/%s: %w", v.secret, v.key, err)
		}
		if out.KeyID != dest.KeyMetadata.Arn || string(out.Plaintext) != v.plaintext {
			return fmt.Errorf("%s/%s is under %s (want %s) or does not hold what was written", v.secret, v.key, out.KeyID, dest.KeyMetadata.Arn)
		}
		if string(s.Data["plain"]) != "not encrypted, left alone" {
			return fmt.Errorf("%s: a value that is not annotated was changed", v.secret)
		}
	}
	fmt.Printf("    %d values decrypt under %s (%s) to what was written\n", len(written), newKey, dest.KeyMetadata.Arn)
	return nil
}

// callKMS calls the endpoint with the AWS SDK's KMS client and checks the
// answers against the engine in this process, which reads the same keystore.
func callKMS(ctx context.Context, endpoint string, e *kms.Engine, v value) error {
	c := awskms.New(awskms.Options{Region: "local", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, "")})
	keys, err := c.ListKeys(ctx, &awskms.ListKeysInput{})
	if err != nil {
		return fmt.Errorf("calling ListKeys: %w", err)
	}
	if len(keys.Keys) != 2 {
		return fmt.Errorf("the endpoint's ListKeys returned %d keys, want 2", len(keys.Keys))
	}
	d, err := c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(newKey)})
	if err != nil {
		return fmt.Errorf("calling DescribeKey: %w", err)
	}
	local, err := e.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: newKey})
	if err != nil {
		return err
	}
	if aws.ToString(d.KeyMetadata.Arn) != local.KeyMetadata.Arn {
		return fmt.Errorf("the endpoint's DescribeKey of %s returned %s, the keystore says %s", newKey, aws.ToString(d.KeyMetadata.Arn), local.KeyMetadata.Arn)
	}
	fmt.Printf("    ListKeys: 2 keys; DescribeKey %s: %s\n", newKey, aws.ToString(d.KeyMetadata.Arn))

	// Encrypt there, decrypt here; encrypt here, re-encrypt and decrypt there.
	enc, err := c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(newKey), Plaintext: []byte(v.plaintext), EncryptionContext: encryptionContext})
	if err != nil {
		return fmt.Errorf("calling Encrypt: %w", err)
	}
	if out, err := e.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encryptionContext}); err != nil || string(out.Plaintext) != v.plaintext {
		return fmt.Errorf("a blob the endpoint encrypted does not decrypt here to its plaintext: %w", err)
	}
	here, err := e.Encrypt(ctx, &kms.EncryptInput{KeyID: oldKey, Plaintext: []byte("from here"), EncryptionContext: encryptionContext})
	if err != nil {
		return err
	}
	re, err := c.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: here.CiphertextBlob, SourceEncryptionContext: encryptionContext,
		DestinationKeyId: aws.String(newKey), DestinationEncryptionContext: encryptionContext})
	if err != nil {
		return fmt.Errorf("calling ReEncrypt: %w", err)
	}
	dec, err := c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: encryptionContext})
	if err != nil {
		return fmt.Errorf("calling Decrypt: %w", err)
	}
	if string(dec.Plaintext) != "from here" || aws.ToString(dec.KeyId) != local.KeyMetadata.Arn {
		return fmt.Errorf("the re-encrypted blob decrypts to %q under %s", dec.Plaintext, aws.ToString(dec.KeyId))
	}
	fmt.Println("    Encrypt there, Decrypt here; Encrypt here, ReEncrypt and Decrypt there: every plaintext and key as expected")
	return nil
}

// errorLines returns the lines of a JSON log at level error.
func errorLines(logs string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"level":"error"`) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
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
