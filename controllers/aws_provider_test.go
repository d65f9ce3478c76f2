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
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	awsprovider "github.com/rekey-dev/rekey/internal/provider/aws"
	"github.com/rekey-dev/rekey/internal/testkms"
)

// awsEnv is a namespace of n Secrets (two blobs each) under a fresh source
// key on an AWS-compatible server, a destination key, and a credentials
// Secret; the controller builds AWS providers for it.
type awsEnv struct {
	t        *testing.T
	f        *fixture
	srv      *testkms.Server
	sdk      *awskms.Client
	src, dst string // key ARNs
}

func newAWSEnv(t *testing.T, srv *testkms.Server, n int) *awsEnv {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	f.newAWS = func(ctx context.Context, c AWSConfig) (KeyService, error) {
		if !c.Static {
			return nil, fmt.Errorf("test expects static credentials")
		}
		return awsprovider.New(ctx, awsprovider.Options{Region: c.Region, Endpoint: c.Endpoint, RequestsPerSecond: 2000, MaxBackoff: 50 * time.Millisecond,
			StaticCredentials: &awsprovider.StaticCredentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}})
	}
	a := &awsEnv{t: t, f: f, srv: srv, sdk: srv.Client()}
	f.allowedEndpoints = append(f.allowedEndpoints, srv.URL)
	tags := []types.Tag{{TagKey: aws.String(rekeyv1alpha1.KeyNamespacesTag), TagValue: aws.String("*")}}
	src, err := a.sdk.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := a.sdk.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	a.src, a.dst = aws.ToString(src.KeyMetadata.Arn), aws.ToString(dst.KeyMetadata.Arn)
	for i := range n {
		name := fmt.Sprintf("aws-%03d", i)
		data := map[string][]byte{}
		for _, k := range []string{"a", "b"} {
			pt := fmt.Sprintf("PLAINTEXT-%s-%s", name, k)
			data[k] = a.encrypt(a.src, pt)
			f.plaintexts[name+"/"+k] = pt
		}
		f.createSecret(name, data, "*")
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kms-creds", Namespace: f.ns}, Type: rekeyv1alpha1.AWSCredentialsSecretType,
		Data: map[string][]byte{CredentialsAccessKeyID: []byte(testkms.AccessKeyID), CredentialsSecretAccessKey: []byte(testkms.SecretAccessKey)}}
	if err := k8sClient.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *awsEnv) encrypt(key, pt string) []byte {
	a.t.Helper()
	out, err := a.sdk.Encrypt(context.Background(), &awskms.EncryptInput{KeyId: aws.String(key), Plaintext: []byte(pt), EncryptionContext: billingCtx})
	if err != nil {
		a.t.Fatal(err)
	}
	return out.CiphertextBlob
}

// rotation creates a KeyRotation from the source to the destination key
// through the server.
func (a *awsEnv) rotation(name string, mutate func(*rekeyv1alpha1.KeyRotation)) {
	a.f.rotation(name, func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs = []string{a.src}
		kr.Spec.DestinationKeyID = a.dst
		kr.Spec.SourceEncryptionContext = billingCtx
		kr.Spec.Provider = &rekeyv1alpha1.ProviderSpec{AWS: &rekeyv1alpha1.AWSProvider{
			Region: testkms.Region, Endpoint: a.srv.URL, CredentialsSecretRef: &rekeyv1alpha1.LocalObjectReference{Name: "kms-creds"}}}
		if mutate != nil {
			mutate(kr)
		}
	})
}

// keyOf decrypts a value through the server and returns the key it is under.
func (a *awsEnv) keyOf(name, key string, ec map[string]string) string {
	a.t.Helper()
	out, err := a.sdk.Decrypt(context.Background(), &awskms.DecryptInput{CiphertextBlob: a.f.secret(name).Data[key], EncryptionContext: ec})
	if err != nil {
		a.t.Fatalf("%s/%s: %v", name, key, err)
	}
	if want := a.f.plaintexts[name+"/"+key]; string(out.Plaintext) != want {
		a.t.Fatalf("%s/%s: the plaintext changed", name, key)
	}
	return aws.ToString(out.KeyId)
}

// verify checks every value decrypts to what was written, under the
// destination key.
func (a *awsEnv) verify() {
	a.t.Helper()
	for sk := range a.f.plaintexts {
		name, key := sk[:len("aws-000")], sk[len("aws-000/"):]
		if got := a.keyOf(name, key, billingCtx); got != a.dst {
			a.t.Fatalf("%s: under %s", sk, got)
		}
	}
}

// finishedRun: the run of the current spec ended and was verified.
func finishedRun(kr *rekeyv1alpha1.KeyRotation) bool {
	return finished(kr) && kr.Status.ObservedGeneration == kr.Generation && verified(kr)
}

// awsRun runs a rotation over n Secrets through srv and returns the
// finished rotation and a check that every value decrypts under the
// destination.
func awsRun(t *testing.T, srv *testkms.Server, n int) (*fixture, *rekeyv1alpha1.KeyRotation, func()) {
	t.Helper()
	a := newAWSEnv(t, srv, n)
	a.f.start(7)
	a.rotation("aws", nil)
	kr := a.f.wait("aws", "finished", finishedRun)
	return a.f, kr, a.verify
}

func TestAWSProviderThroughRekeyEndpoint(t *testing.T) {
	srv := testkms.Rekey(t)
	f, kr, verify := awsRun(t, srv, 20)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %+v", kr.Status.Phase, kr.Status.Failures)
	}
	if kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 20, Rotated: 20}) || kr.Status.Blobs.Rotated != 40 {
		t.Fatalf("counts: %+v %+v", kr.Status.Secrets, kr.Status.Blobs)
	}
	if c := condition(kr, rekeyv1alpha1.ConditionSourceKeysDrained); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SourceKeysDrained: %+v", c)
	}
	verify()
	f.assertNoSecretsLeaked(kr)
}

func TestAWSProviderThroughLocalKMS(t *testing.T) {
	srv := testkms.LocalKMS(t)
	_, kr, verify := awsRun(t, srv, 10)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Secrets.Rotated != 10 {
		t.Fatalf("phase %s counts %+v failures %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Failures)
	}
	verify()
}

// TestThrottlingNeverFailsASecret: a third of ReEncrypt calls are throttled;
// every Secret still completes and none is marked failed.
func TestThrottlingNeverFailsASecret(t *testing.T) {
	srv := testkms.Rekey(t)
	srv.ThrottleEvery(3)
	_, kr, verify := awsRun(t, srv, 20)
	if kr.Status.Phase != rekeyv1alpha1.PhaseSucceeded || kr.Status.Secrets != (rekeyv1alpha1.SecretCounts{Total: 20, Rotated: 20}) {
		t.Fatalf("phase %s counts %+v failures %+v", kr.Status.Phase, kr.Status.Secrets, kr.Status.Failures)
	}
	if srv.Throttled.Load() < 10 {
		t.Fatalf("only %d calls were throttled", srv.Throttled.Load())
	}
	verify()
}

func TestAWSEndpointWithoutCredentialsStalls(t *testing.T) {
	f := newFixture(t)
	f.newAWS = func(context.Context, AWSConfig) (KeyService, error) { return nil, fmt.Errorf("must not be called") }
	f.allowedEndpoints = []string{"http://127.0.0.1:1"}
	f.start(10)
	f.rotation("aws", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.Provider = &rekeyv1alpha1.ProviderSpec{AWS: &rekeyv1alpha1.AWSProvider{Region: "eu-west-1", Endpoint: "http://127.0.0.1:1"}}
	})
	f.wait("aws", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Reason == ReasonEndpointNeedsCreds
	})
	f.rotation("aws-missing-creds", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.Provider = &rekeyv1alpha1.ProviderSpec{AWS: &rekeyv1alpha1.AWSProvider{Region: "eu-west-1",
			CredentialsSecretRef: &rekeyv1alpha1.LocalObjectReference{Name: "nope"}}}
	})
	f.wait("aws-missing-creds", "Stalled", func(kr *rekeyv1alpha1.KeyRotation) bool {
		c := condition(kr, rekeyv1alpha1.ConditionStalled)
		return c != nil && c.Reason == ReasonCredentialsInvalid
	})
}
