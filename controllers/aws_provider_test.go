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

// awsRun sets up n Secrets under a fresh source key on srv, a destination
// key, a credentials Secret and a KeyRotation with provider.aws pointing at
// srv, runs the controller, and returns the finished rotation and a check
// that every value decrypts under the destination.
func awsRun(t *testing.T, srv *testkms.Server, n int) (*fixture, *rekeyv1alpha1.KeyRotation, func()) {
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
	sdk := srv.Client()
	tags := []types.Tag{{TagKey: aws.String(rekeyv1alpha1.KeyNamespacesTag), TagValue: aws.String("*")}}
	src, err := sdk.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := sdk.CreateKey(ctx, &awskms.CreateKeyInput{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("aws-%03d", i)
		data := map[string][]byte{}
		for _, k := range []string{"a", "b"} {
			pt := fmt.Sprintf("PLAINTEXT-%s-%s", name, k)
			out, err := sdk.Encrypt(ctx, &awskms.EncryptInput{KeyId: src.KeyMetadata.KeyId, Plaintext: []byte(pt), EncryptionContext: billingCtx})
			if err != nil {
				t.Fatal(err)
			}
			data[k] = out.CiphertextBlob
			f.plaintexts[name+"/"+k] = pt
		}
		f.createSecret(name, data, "*")
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kms-creds", Namespace: f.ns},
		Data: map[string][]byte{CredentialsAccessKeyID: []byte(testkms.AccessKeyID), CredentialsSecretAccessKey: []byte(testkms.SecretAccessKey)}}
	if err := k8sClient.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	f.start(7)
	f.rotation("aws", func(kr *rekeyv1alpha1.KeyRotation) {
		kr.Spec.SourceKeyIDs = []string{aws.ToString(src.KeyMetadata.Arn)}
		kr.Spec.DestinationKeyID = aws.ToString(dst.KeyMetadata.KeyId)
		kr.Spec.SourceEncryptionContext = billingCtx
		kr.Spec.Provider = &rekeyv1alpha1.ProviderSpec{AWS: &rekeyv1alpha1.AWSProvider{
			Region: testkms.Region, Endpoint: srv.URL, CredentialsSecretRef: &rekeyv1alpha1.LocalObjectReference{Name: "kms-creds"}}}
	})
	kr := f.wait("aws", "finished", func(kr *rekeyv1alpha1.KeyRotation) bool {
		return kr.Status.Phase == rekeyv1alpha1.PhaseSucceeded || kr.Status.Phase == rekeyv1alpha1.PhaseFailed
	})
	verify := func() {
		t.Helper()
		for sk, pt := range f.plaintexts {
			name, key := sk[:len("aws-000")], sk[len("aws-000/"):]
			out, err := sdk.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: f.secret(name).Data[key], EncryptionContext: billingCtx})
			if err != nil {
				t.Fatalf("%s: %v", sk, err)
			}
			if string(out.Plaintext) != pt || aws.ToString(out.KeyId) != aws.ToString(dst.KeyMetadata.Arn) {
				t.Fatalf("%s: under %s", sk, aws.ToString(out.KeyId))
			}
		}
	}
	return f, kr, verify
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
