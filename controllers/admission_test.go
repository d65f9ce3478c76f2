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

// The multi-tenant guards: who may start a rotation (the admission policy
// shipped in config/admission), where the operator may connect, and whose
// credentials it may use.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/testkms"
)

var installPolicyOnce sync.Once

// installAdmissionPolicy applies config/admission's policy and binding, as
// the install bundle does, once for the suite (the envtest admin is in
// system:masters, so the suite's own requests pass it).
func installAdmissionPolicy(t *testing.T) {
	t.Helper()
	installPolicyOnce.Do(func() {
		dir := filepath.Join("..", "config", "admission")
		policy := &admissionv1.ValidatingAdmissionPolicy{}
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{}
		for file, obj := range map[string]client.Object{"policy.yaml": policy, "binding.yaml": binding} {
			raw, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(raw, obj); err != nil {
				t.Fatal(err)
			}
			if err := k8sClient.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	})
}

// tenant is a user bound to the keyrotation-editor ClusterRole of
// config/rbac in namespace ns, plus the given extra rules there.
func tenant(t *testing.T, ns, name string, extra ...rbacv1.PolicyRule) client.Client {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "keyrotation_editor_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	editor := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, editor); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: append(editor.Rules, extra...)}
	if err := k8sClient.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: name + "@" + ns, APIGroup: "rbac.authorization.k8s.io"}},
	}
	if err := k8sClient.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	u, err := env.Env.AddUser(envtest.User{Name: name + "@" + ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Finding 3 of the multi-tenant issue, and finding 1's first half: a user
// with only KeyRotation rights in a namespace cannot make the operator
// rewrite its Secrets, nor point it at an endpoint of theirs with an app's
// credentials. Only someone who may update the namespace's Secrets (and
// read the credentials Secret named) may create or change a KeyRotation.
func TestOnlyWhoMayUpdateSecretsMayStartARotation(t *testing.T) {
	ctx := context.Background()
	installAdmissionPolicy(t)
	srv := testkms.Rekey(t) // "the tenant's own server"
	a := newAWSEnv(t, srv, 2)
	a.f.start(10)
	calls := srv.ReEncrypts.Load()
	ns := a.f.ns
	updateSecrets := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"update"}}
	readCreds := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"kms-creds"}}
	editorOnly := tenant(t, ns, "editor-only")
	mayUpdate := tenant(t, ns, "may-update", updateSecrets)
	mayUpdateAndRead := tenant(t, ns, "may-update-and-read", updateSecrets, readCreds)

	kr := func(name string, withCreds bool) *rekeyv1alpha1.KeyRotation {
		k := &rekeyv1alpha1.KeyRotation{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       rekeyv1alpha1.KeyRotationSpec{SourceKeyIDs: []string{a.src}, DestinationKeyID: a.dst},
		}
		if withCreds {
			k.Spec.Provider = &rekeyv1alpha1.ProviderSpec{AWS: &rekeyv1alpha1.AWSProvider{Region: testkms.Region, Endpoint: srv.URL,
				CredentialsSecretRef: &rekeyv1alpha1.LocalObjectReference{Name: "kms-creds"}}}
		}
		return k
	}
	// The policy takes effect once the apiserver has loaded it.
	a.f.eventually("the admission policy denies a user without rights on Secrets", func() bool {
		err := editorOnly.Create(ctx, kr("probe", false))
		if err == nil {
			_ = k8sClient.Delete(ctx, kr("probe", false))
		}
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err)
	})
	for _, c := range []struct {
		who       client.Client
		name      string
		withCreds bool
		allowed   bool
	}{
		{editorOnly, "editor-embedded", false, false},
		{editorOnly, "editor-aws", true, false},
		{mayUpdate, "update-aws-unreadable-creds", true, false},
		{mayUpdate, "update-embedded", false, true},
		{mayUpdateAndRead, "update-aws", true, true},
	} {
		err := c.who.Create(ctx, kr(c.name, c.withCreds))
		switch {
		case c.allowed && err != nil:
			t.Fatalf("%s: denied: %v", c.name, err)
		case !c.allowed && err == nil:
			t.Fatalf("%s: admitted", c.name)
		case !c.allowed && !strings.Contains(err.Error(), "KeyRotation") && !strings.Contains(err.Error(), "credentialsSecretRef"):
			t.Fatalf("%s: the denial does not say why: %v", c.name, err)
		}
	}
	// A change by someone without the right is denied too.
	err := editorOnly.Patch(ctx, kr("update-embedded", false), client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"maxConcurrency":2}}`)))
	if err == nil {
		t.Fatal("a user without rights on Secrets changed a KeyRotation")
	}
	// The denied rotations never reached the operator: nothing was sent.
	a.f.wait("update-aws", "finished", finishedRun)
	if srv.ReEncrypts.Load() == calls {
		t.Fatal("the admitted rotation did not run (the test proves nothing)")
	}
	for _, name := range []string{"editor-embedded", "editor-aws", "update-aws-unreadable-creds"} {
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rekeyv1alpha1.KeyRotation{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s exists: %v", name, err)
		}
	}
}

// Finding 1 of the multi-tenant issue: a rotation never makes the operator
// connect where its admin did not allow, nor borrow a Secret that was not
// made for rekey; either stalls before anything is sent or written.
func TestEndpointAllowlistAndTypedCredentials(t *testing.T) {
	ctx := context.Background()
	srv := testkms.Rekey(t)
	a := newAWSEnv(t, srv, 2)
	a.f.allowedEndpoints = nil // the operator allows no endpoint override
	appCreds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-aws", Namespace: a.f.ns},
		Data: map[string][]byte{CredentialsAccessKeyID: []byte(testkms.AccessKeyID), CredentialsSecretAccessKey: []byte(testkms.SecretAccessKey)}}
	if err := k8sClient.Create(ctx, appCreds); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for i := range 2 {
		s := a.f.secret(fmt.Sprintf("aws-%03d", i))
		before[s.Name] = s.ResourceVersion
	}
	a.f.start(10)
	cases := map[string]struct {
		endpoint, creds, reason string
	}{
		"not-allowed":     {srv.URL, "kms-creds", ReasonEndpointNotAllowed},
		"file-scheme":     {"file:///etc/passwd", "kms-creds", ReasonEndpointNotAllowed},
		"plain-http":      {"http://kms.example:80", "kms-creds", ReasonEndpointNotAllowed},
		"app-credentials": {"", "app-aws", ReasonCredentialsInvalid},
	}
	for name, c := range cases {
		a.rotation(name, func(kr *rekeyv1alpha1.KeyRotation) {
			kr.Spec.Provider.AWS.Endpoint = c.endpoint
			kr.Spec.Provider.AWS.CredentialsSecretRef.Name = c.creds
		})
	}
	for name, c := range cases {
		a.f.wait(name, "Stalled "+c.reason, func(kr *rekeyv1alpha1.KeyRotation) bool {
			s := condition(kr, rekeyv1alpha1.ConditionStalled)
			return s != nil && s.Reason == c.reason
		})
	}
	if n := srv.ReEncrypts.Load(); n != 0 {
		t.Fatalf("%d requests reached an endpoint the operator does not allow", n)
	}
	for name, rv := range before {
		if a.f.secret(name).ResourceVersion != rv {
			t.Fatalf("Secret %s was written", name)
		}
	}
}
