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
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// fixture is one test's namespace, engine and controller.
type fixture struct {
	// config is the controller's identity (default: the envtest admin).
	config *rest.Config
	// newAWS builds the AWS key service for provider.aws rotations (nil: none).
	newAWS func(ctx context.Context, c AWSConfig) (KeyService, error)
	// wrapPages, when set, wraps the controller's Secret lister.
	wrapPages func(secretpage.Lister) secretpage.Lister
	// listBudget is the controller's list byte budget (0: the default).
	listBudget int64
	// embedded, when set, replaces f.ks as the controller's embedded key service.
	embedded KeyService
	// allowedEndpoints are the AWS endpoint overrides the operator allows.
	allowedEndpoints []string
	// keyServices is the controller's factory, once started.
	keyServices *KeyServiceFactory
	// cache is the manager's cache the controller reads KeyRotations from.
	cache client.Reader
	// clockOffset moves the controller's clock forward.
	clockOffset atomic.Int64
	// failStatusPatches makes the next N status patches that record a
	// failure fail.
	failStatusPatches atomic.Int32
	// rec is the running reconciler, once started.
	rec     *KeyRotationReconciler
	t       *testing.T
	ns      string
	engine  *kms.Engine
	ks      *hookedKeyService
	logs    *syncBuffer
	updates *updateCounter
	// plaintexts the test wrote, by "secret/key", to verify against.
	plaintexts map[string]string
	contexts   map[string]map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		t: t, ns: newNamespace(t), engine: e,
		ks:         &hookedKeyService{Provider: embedded.New(e)},
		logs:       &syncBuffer{},
		updates:    &updateCounter{n: map[string]int{}},
		plaintexts: map[string]string{}, contexts: map[string]map[string]string{},
	}
}

func (f *fixture) key(alias string) *kms.KeyMetadata {
	f.t.Helper()
	ctx := context.Background()
	// Keys allow the test's namespace, as an operator tags them for a team.
	out, err := f.engine.CreateKey(ctx, &kms.CreateKeyInput{Tags: []kms.Tag{{TagKey: rekeyv1alpha1.KeyNamespacesTag, TagValue: "other," + f.ns}}})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.engine.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: alias, TargetKeyID: out.KeyMetadata.KeyID}); err != nil {
		f.t.Fatal(err)
	}
	return out.KeyMetadata
}

func (f *fixture) encrypt(key, pt string, ec map[string]string) []byte {
	f.t.Helper()
	out, err := f.engine.Encrypt(context.Background(), &kms.EncryptInput{KeyID: key, Plaintext: []byte(pt), EncryptionContext: ec})
	if err != nil {
		f.t.Fatal(err)
	}
	return out.CiphertextBlob
}

// secrets creates n annotated Secrets with three blobs each under key.
func (f *fixture) secrets(n int, key string, ec map[string]string) {
	f.t.Helper()
	for i := range n {
		name := fmt.Sprintf("app-%03d", i)
		data := map[string][]byte{}
		for _, k := range []string{"password", "apiToken", "dsn"} {
			pt := fmt.Sprintf("PLAINTEXT-%s-%s-%d", name, k, i)
			data[k] = f.encrypt(key, pt, ec)
			f.plaintexts[name+"/"+k] = pt
		}
		f.contexts[name] = ec
		f.createSecret(name, data, "password,apiToken,dsn")
	}
}

func (f *fixture) createSecret(name string, data map[string][]byte, keys string) {
	f.t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{"team": "billing"},
			Annotations: map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: keys}},
		Data: data,
	}
	if err := k8sClient.Create(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) rotation(name string, mutate func(*rekeyv1alpha1.KeyRotation)) {
	f.t.Helper()
	kr := &rekeyv1alpha1.KeyRotation{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: rekeyv1alpha1.KeyRotationSpec{
			SourceKeyIDs: []string{"alias/old"}, DestinationKeyID: "alias/new", MaxConcurrency: 4,
		},
	}
	if mutate != nil {
		mutate(kr)
	}
	if err := k8sClient.Create(context.Background(), kr); err != nil {
		f.t.Fatal(err)
	}
}

// start runs a manager with the KeyRotation controller for this namespace
// and returns a function that stops it and waits until it has.
func (f *fixture) start(pageSize int64) func() {
	f.t.Helper()
	logger := zap.New(zap.WriteTo(f.logs), zap.UseDevMode(true))
	cfg := env.Config
	if f.config != nil {
		cfg = f.config
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Logger:                 logger,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	direct, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		f.t.Fatal(err)
	}
	reader := mgr.GetAPIReader()
	pages, err := secretpage.NewAPILister(mgr.GetConfig(), mgr.GetHTTPClient(), f.listBudget)
	if err != nil {
		f.t.Fatal(err)
	}
	var lister secretpage.Lister = pages
	if f.wrapPages != nil {
		lister = f.wrapPages(lister)
	}
	var emb KeyService = f.ks
	if f.embedded != nil {
		emb = f.embedded
	}
	f.keyServices = &KeyServiceFactory{Embedded: emb, NewAWS: f.newAWS, Reader: mgr.GetAPIReader(), AllowedEndpoints: f.allowedEndpoints}
	r := &KeyRotationReconciler{
		// Writes go straight to the apiserver through the interceptor;
		// reads go through the manager's client, as in the operator (its
		// cache for KeyRotations), so a reconciler reading stale state from
		// the cache would show here.
		Client:            readsFrom{Client: interceptor.NewClient(direct, f.updates.funcs(&f.failStatusPatches)), reader: mgr.GetClient()},
		MinVerifyInterval: time.Millisecond,
		Clock:             func() time.Time { return time.Now().Add(time.Duration(f.clockOffset.Load())) },
		APIReader:         reader,
		Pages:             lister,
		Recorder:          mgr.GetEventRecorder("rekey-test"),
		PageSize:          pageSize,
		KeyServices:       f.keyServices,
	}
	f.rec = r
	f.cache = mgr.GetCache()
	if err := r.SetupWithManager(mgr, 1); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			f.t.Errorf("manager: %v", err)
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	f.t.Cleanup(stop)
	return stop
}

// readsFrom is a client that reads through another reader.
type readsFrom struct {
	client.Client
	reader client.Reader
}

func (c readsFrom) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return c.reader.Get(ctx, key, obj, opts...)
}

func (c readsFrom) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.reader.List(ctx, list, opts...)
}

// wait polls the KeyRotation until cond holds (bounded by a deadline).
// Every status it sees must keep the counts' invariants: a checkpoint whose
// counts do not add up fails the test wherever it is seen.
func (f *fixture) wait(name string, what string, cond func(*rekeyv1alpha1.KeyRotation) bool) *rekeyv1alpha1.KeyRotation {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	kr := &rekeyv1alpha1.KeyRotation{}
	for {
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, kr); err != nil {
			f.t.Fatal(err)
		}
		checkCounts(f.t, kr)
		if cond(kr) {
			return kr
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("KeyRotation %s never became %s; status: %+v", name, what, kr.Status)
		}
		time.Sleep(50 * time.Millisecond) // polling the apiserver, bounded by the deadline
	}
}

// checkCounts checks that a status's counts add up.
func checkCounts(t *testing.T, kr *rekeyv1alpha1.KeyRotation) {
	t.Helper()
	b, s := kr.Status.Blobs, kr.Status.Secrets
	if b.Total != b.Rotated+b.WouldRotate+b.Skipped+b.Failed {
		t.Fatalf("blob counts do not add up: %+v", b)
	}
	if d := s.Rotated + s.WouldRotate + s.Skipped + s.Failed; d > s.Total || (finished(kr) && d != s.Total) {
		t.Fatalf("Secret counts do not add up: %+v (phase %s)", s, kr.Status.Phase)
	}
	if kr.Spec.DryRun && kr.Status.ObservedGeneration == kr.Generation && (s.Rotated != 0 || b.Rotated != 0) {
		t.Fatalf("a dry run counts Secrets as rotated: %+v %+v", s, b)
	}
}

// underSource counts the blobs in the rotation's selected Secrets whose
// header names one of its source keys (not at the destination's current
// version), read straight from the apiserver and the engine.
func (f *fixture) underSource(kr *rekeyv1alpha1.KeyRotation) int {
	f.t.Helper()
	sel := labels.Everything()
	if kr.Spec.SecretSelector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(kr.Spec.SecretSelector); err != nil {
			f.t.Fatal(err)
		}
	}
	var list corev1.SecretList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace(f.ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for i := range list.Items {
		s := &list.Items[i]
		if !selected(s) {
			continue
		}
		for _, k := range annotatedKeys(s) {
			bk, err := f.engine.InspectBlob(s.Data[k])
			if err != nil {
				continue
			}
			dest := bk.KeyARN == kr.Status.ResolvedDestinationKeyARN
			if contains(kr.Status.ResolvedSourceKeyARNs, bk.KeyARN) && (!dest || !bk.Current) {
				n++
			}
		}
	}
	return n
}

// assertDrainedTruthful: SourceKeysDrained True only when no blob is under
// a source key, read independently of the controller.
func (f *fixture) assertDrainedTruthful(kr *rekeyv1alpha1.KeyRotation) {
	f.t.Helper()
	c := meta.FindStatusCondition(kr.Status.Conditions, rekeyv1alpha1.ConditionSourceKeysDrained)
	if c != nil && c.Status == metav1.ConditionTrue {
		if n := f.underSource(kr); n > 0 {
			f.t.Fatalf("SourceKeysDrained is True while %d blobs are under a source key: %s", n, c.Message)
		}
	}
}

func drained(kr *rekeyv1alpha1.KeyRotation) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(kr.Status.Conditions, rekeyv1alpha1.ConditionSourceKeysDrained); c != nil {
		return c.Status
	}
	return ""
}

// phaseIs waits for a phase; for the phases that end a run, also for the
// verification that follows it.
func phaseIs(p rekeyv1alpha1.Phase) func(*rekeyv1alpha1.KeyRotation) bool {
	return func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == p && (!finished(kr) || verified(kr))
	}
}

// verified: the read after the run's last write has set SourceKeysDrained.
func verified(kr *rekeyv1alpha1.KeyRotation) bool {
	c := meta.FindStatusCondition(kr.Status.Conditions, rekeyv1alpha1.ConditionSourceKeysDrained)
	return c != nil && c.Reason != ReasonVerificationPending && c.Reason != ReasonRunInProgress
}

func (f *fixture) secret(name string) *corev1.Secret {
	f.t.Helper()
	s := &corev1.Secret{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// verify decrypts every blob the test wrote and checks it is the plaintext
// it wrote, under the key and version wanted.
func (f *fixture) verify(wantKey *kms.KeyMetadata, skip ...string) {
	f.t.Helper()
	ctx := context.Background()
	want, err := f.engine.DescribeKey(ctx, &kms.DescribeKeyInput{KeyID: wantKey.KeyID})
	if err != nil {
		f.t.Fatal(err)
	}
	for sk, pt := range f.plaintexts {
		name, key, _ := strings.Cut(sk, "/")
		if contains(skip, name) {
			continue
		}
		s := f.secret(name)
		out, err := f.engine.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: s.Data[key], EncryptionContext: f.contexts[name]})
		if err != nil {
			f.t.Fatalf("%s: %v", sk, err)
		}
		if string(out.Plaintext) != pt {
			f.t.Fatalf("%s: plaintext changed", sk)
		}
		if out.KeyID != want.KeyMetadata.Arn || out.KeyMaterialID != want.KeyMetadata.CurrentKeyMaterialID {
			f.t.Fatalf("%s: under %s/%s, want %s/%s", sk, out.KeyID, out.KeyMaterialID, want.KeyMetadata.Arn, want.KeyMetadata.CurrentKeyMaterialID)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hookedKeyService is the embedded provider with an optional hook run
// before each ReEncrypt: tests use it to act at a precise point of a run.
type hookedKeyService struct {
	*embedded.Provider
	mu    sync.Mutex
	calls int
	hook  func(call int, in *kms.ReEncryptInput) error
}

func (h *hookedKeyService) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	h.mu.Lock()
	h.calls++
	n, hook := h.calls, h.hook
	h.mu.Unlock()
	if hook != nil {
		if err := hook(n, in); err != nil {
			return nil, err
		}
	}
	return h.Provider.ReEncrypt(ctx, in)
}

func (h *hookedKeyService) setHook(fn func(call int, in *kms.ReEncryptInput) error) {
	h.mu.Lock()
	h.hook = fn
	h.mu.Unlock()
}

var _ BlobInspector = (*hookedKeyService)(nil)

// updateCounter counts Secret updates by name.
type updateCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// funcs counts Secret updates, and fails the status patches failPatches
// asks for.
func (u *updateCounter) funcs(failPatches *atomic.Int32) interceptor.Funcs {
	return interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			err := c.Update(ctx, obj, opts...)
			if _, ok := obj.(*corev1.Secret); ok && err == nil {
				u.mu.Lock()
				u.n[obj.GetName()]++
				u.mu.Unlock()
			}
			return err
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if kr, ok := obj.(*rekeyv1alpha1.KeyRotation); ok && len(kr.Status.Failures) > 0 && failPatches.Load() > 0 && failPatches.Add(-1) >= 0 {
				return apierrors.NewServiceUnavailable("injected: the status patch failed")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
}

// total returns how many Secret updates were made.
func (u *updateCounter) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, v := range u.n {
		n += v
	}
	return n
}

func (u *updateCounter) max() (string, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	name, most := "", 0
	for k, n := range u.n {
		if n > most {
			name, most = k, n
		}
	}
	return name, most
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// assertNoSecretsLeaked checks logs, Events and status for any plaintext the
// test wrote and any blob in base64.
func (f *fixture) assertNoSecretsLeaked(kr *rekeyv1alpha1.KeyRotation) {
	f.t.Helper()
	var evs corev1.EventList
	if err := k8sClient.List(context.Background(), &evs, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	texts := make([]string, 0, 2+2*len(evs.Items))
	texts = append(texts, f.logs.String())
	for _, e := range evs.Items {
		texts = append(texts, e.Message, e.Reason)
	}
	st, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&kr.Status)
	texts = append(texts, fmt.Sprint(st))
	var secrets corev1.SecretList
	if err := k8sClient.List(context.Background(), &secrets, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	for _, txt := range texts {
		if strings.Contains(txt, "PLAINTEXT-") {
			f.t.Fatalf("a plaintext leaked into logs, events or status")
		}
		for _, s := range secrets.Items {
			for _, b := range s.Data {
				if len(b) >= 16 && (strings.Contains(txt, base64.StdEncoding.EncodeToString(b)) || bytes.Contains([]byte(txt), b[len(b)/2:])) {
					f.t.Fatalf("Secret data (a ciphertext or a credential) leaked into logs, events or status")
				}
			}
		}
	}
}

type unstructuredObj struct{ Object map[string]any }

func (u *unstructuredObj) toUnstructured() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: u.Object}
}
