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

package awsapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rekey-dev/rekey/internal/kms"
)

// captureBodies is an HTTP transport that records each request body the
// AWS SDK sends and answers with an error, so no server is needed to see
// the SDK's JSON.
type captureBodies struct{ bodies [][]byte }

func (c *captureBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	c.bodies = append(c.bodies, b)
	return &http.Response{StatusCode: http.StatusBadRequest, Request: r,
		Header: http.Header{"Content-Type": {contentType}},
		Body:   io.NopCloser(strings.NewReader(`{"__type":"ValidationException","message":"captured"}`))}, nil
}

// sdkBodies returns the JSON the real AWS SDK for Go v2 sends for an
// Encrypt, a Decrypt and a ReEncrypt with every field set.
func sdkBodies(t *testing.T) (encrypt, decrypt, reencrypt []byte) {
	t.Helper()
	cap := &captureBodies{}
	c := awskms.New(awskms.Options{
		Region: "eu-west-1", BaseEndpoint: aws.String("http://127.0.0.1:9"), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AK", "SK", ""),
		HTTPClient:  &http.Client{Transport: cap},
	})
	ctx := context.Background()
	ec := map[string]string{"app": "billing", "tenant": "team-a"}
	blob := bytes.Repeat([]byte{0xfb, 0x01, 0x7f}, 100)
	_, _ = c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/billing"), Plaintext: []byte("the password"),
		EncryptionContext: ec, GrantTokens: []string{"g1", "g2"}, EncryptionAlgorithm: "SYMMETRIC_DEFAULT", DryRun: aws.Bool(true)})
	_, _ = c.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String("arn:aws:kms:eu-west-1:111122223333:key/1234"),
		EncryptionContext: ec, GrantTokens: []string{"g1"}, EncryptionAlgorithm: "SYMMETRIC_DEFAULT", DryRun: aws.Bool(false)})
	_, _ = c.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: blob, SourceKeyId: aws.String("alias/a"), SourceEncryptionContext: ec,
		DestinationKeyId: aws.String("alias/b"), DestinationEncryptionContext: map[string]string{"app": "billing-2026"},
		SourceEncryptionAlgorithm: "SYMMETRIC_DEFAULT", DestinationEncryptionAlgorithm: "SYMMETRIC_DEFAULT",
		GrantTokens: []string{"g1"}, DryRun: aws.Bool(true)})
	if len(cap.bodies) != 3 {
		t.Fatalf("captured %d bodies, want 3", len(cap.bodies))
	}
	return cap.bodies[0], cap.bodies[1], cap.bodies[2]
}

// TestFastPathTakesWhatTheSDKSends: the one-pass decoder handles the
// requests the AWS SDK actually sends (else it would be a slower path in
// practice), and decodes them exactly as decodeStrict does.
func TestFastPathTakesWhatTheSDKSends(t *testing.T) {
	enc, dec, re := sdkBodies(t)
	for _, tc := range []struct {
		name string
		body []byte
		fast func([]byte) (any, bool)
		zero func() any
	}{
		{"Encrypt", enc, func(b []byte) (any, bool) { in := new(kms.EncryptInput); return in, fastEncrypt(b, in) }, func() any { return new(kms.EncryptInput) }},
		{"Decrypt", dec, func(b []byte) (any, bool) { in := new(kms.DecryptInput); return in, fastDecrypt(b, in) }, func() any { return new(kms.DecryptInput) }},
		{"ReEncrypt", re, func(b []byte) (any, bool) { in := new(kms.ReEncryptInput); return in, fastReEncrypt(b, in) }, func() any { return new(kms.ReEncryptInput) }},
	} {
		got, ok := tc.fast(tc.body)
		if !ok {
			t.Errorf("%s: the fast path gave up on the SDK's body %s", tc.name, tc.body)
			continue
		}
		want := tc.zero()
		if err := decodeStrict(tc.body, want); err != nil {
			t.Fatalf("%s: decodeStrict: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fast path decoded\n%+v\ndecodeStrict\n%+v", tc.name, got, want)
		}
	}
}

// TestFastPathGivesUpOnAnythingElse: bodies outside the fast path's subset
// go to decodeStrict, which accepts or refuses them as before.
func TestFastPathGivesUpOnAnythingElse(t *testing.T) {
	const blob = `"AAEC"`
	for _, tc := range []struct {
		name, body string
		valid      bool
	}{
		{"an escape in a key id", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"alias\/b"}`, true},
		{"a non-ASCII context value", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b","SourceEncryptionContext":{"app":"zürich"}}`, true},
		{"null for an optional field", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b","GrantTokens":null}`, true},
		{"a field twice", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"a","DestinationKeyId":"b"}`, false},
		{"a field twice, once escaped", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"a","Destination\u004beyId":"b"}`, false},
		{"a context key twice", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b","SourceEncryptionContext":{"a":"1","a":"2"}}`, false},
		{"a name in another case", `{"CiphertextBlob":` + blob + `,"destinationKeyId":"b"}`, false},
		{"an unknown field", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b","Extra":"x"}`, false},
		{"an escaped newline inside the blob", `{"CiphertextBlob":"AA\nEC","DestinationKeyId":"b"}`, true},
		{"a raw newline inside the blob", "{\"CiphertextBlob\":\"AA\nEC\",\"DestinationKeyId\":\"b\"}", false},
		{"an escaped backslash inside the blob", `{"CiphertextBlob":"AA\\EC","DestinationKeyId":"b"}`, false},
		{"unpadded base64", `{"CiphertextBlob":"AAE","DestinationKeyId":"b"}`, false},
		{"a number for a string", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":1}`, false},
		{"trailing bytes", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b"}{}`, false},
		{"a trailing comma", `{"CiphertextBlob":` + blob + `,"DestinationKeyId":"b",}`, false},
		{"an array at the top", `[]`, false},
	} {
		in := new(kms.ReEncryptInput)
		if fastReEncrypt([]byte(tc.body), in) {
			t.Errorf("%s: the fast path took %s", tc.name, tc.body)
		}
		got, want := new(kms.ReEncryptInput), new(kms.ReEncryptInput)
		gotErr, wantErr := decodeRequest([]byte(tc.body), got), decodeStrict([]byte(tc.body), want)
		if (gotErr == nil) != tc.valid || (wantErr == nil) != tc.valid {
			t.Errorf("%s: decodeRequest: %v, decodeStrict: %v; want valid=%v", tc.name, gotErr, wantErr, tc.valid)
		}
		if tc.valid && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decodeRequest %+v, decodeStrict %+v", tc.name, got, want)
		}
	}
}

// FuzzFastDecode: whatever the fast path accepts, decodeStrict accepts
// with an equal result; and decodeRequest agrees with decodeStrict on
// every body.
func FuzzFastDecode(f *testing.F) {
	enc, dec, re := sdkBodies(&testing.T{})
	for _, b := range [][]byte{enc, dec, re, []byte(`{}`), []byte(`{"CiphertextBlob":"","GrantTokens":[],"SourceEncryptionContext":{}}`)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pair := range [][2]any{
			{new(kms.EncryptInput), new(kms.EncryptInput)},
			{new(kms.DecryptInput), new(kms.DecryptInput)},
			{new(kms.ReEncryptInput), new(kms.ReEncryptInput)},
		} {
			got, want := pair[0], pair[1]
			gotErr, wantErr := decodeRequest(body, got), decodeStrict(body, want)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("%T %q: decodeRequest: %v, decodeStrict: %v", got, body, gotErr, wantErr)
			}
			if gotErr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%T %q: decodeRequest %+v, decodeStrict %+v", got, body, got, want)
			}
		}
	})
}

// TestEncodeResponseMatchesJSONIterator: the one-pass encoder writes the
// bytes json-iterator writes, and gives up on strings it does not write.
func TestEncodeResponseMatchesJSONIterator(t *testing.T) {
	arn := "arn:aws:kms:eu-west-1:111122223333:key/1234"
	for _, tc := range []struct {
		out      any
		fastPath bool
	}{
		{&kms.ReEncryptOutput{CiphertextBlob: []byte{1, 2, 3, 0xff}, KeyID: arn, SourceKeyID: arn, SourceEncryptionAlgorithm: "SYMMETRIC_DEFAULT",
			DestinationEncryptionAlgorithm: "SYMMETRIC_DEFAULT", SourceKeyMaterialID: "m1", DestinationKeyMaterialID: "m2"}, true},
		{&kms.ReEncryptOutput{KeyID: arn}, true},
		{&kms.ReEncryptOutput{CiphertextBlob: []byte{}, KeyID: "a<b>&c"}, false},
		{&kms.DecryptOutput{KeyID: arn, Plaintext: []byte("secret"), EncryptionAlgorithm: "SYMMETRIC_DEFAULT", KeyMaterialID: "m"}, true},
		{&kms.DecryptOutput{KeyID: "\"quoted\""}, false},
		{&kms.DecryptOutput{KeyID: "zürich"}, false},
		{&kms.EncryptOutput{CiphertextBlob: bytes.Repeat([]byte{7}, 100), KeyID: arn, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, true},
		{&kms.EncryptOutput{KeyID: "line\nbreak"}, false},
		{&kms.DescribeKeyOutput{}, false},
	} {
		want, err := json.Marshal(tc.out)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := encodeResponse([]byte("prefix"), tc.out)
		if ok != tc.fastPath {
			t.Errorf("%+v: fast path %v, want %v", tc.out, ok, tc.fastPath)
			continue
		}
		if !ok {
			if string(got) != "prefix" {
				t.Errorf("%+v: gave up but left %q in the buffer", tc.out, got)
			}
			continue
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("encodeResponse\n%s\njson-iterator\n%s", got, want)
		}
	}
}

// TestFastPathSharesAnIdenticalContext: a ReEncrypt that sends the same
// context twice, byte for byte, gets one map for both (the engine then
// canonicalises it once); different contexts stay two maps. Either way
// the values are decodeStrict's.
func TestFastPathSharesAnIdenticalContext(t *testing.T) {
	for _, tc := range []struct {
		body string
		same bool
	}{
		{`{"CiphertextBlob":"AAEC","DestinationEncryptionContext":{"app":"a","t":"b"},"DestinationKeyId":"k","SourceEncryptionContext":{"app":"a","t":"b"}}`, true},
		{`{"CiphertextBlob":"AAEC","DestinationEncryptionContext":{},"DestinationKeyId":"k","SourceEncryptionContext":{}}`, true},
		{`{"CiphertextBlob":"AAEC","DestinationEncryptionContext":{"app":"a"},"DestinationKeyId":"k","SourceEncryptionContext":{"app":"b"}}`, false},
		{`{"CiphertextBlob":"AAEC","DestinationEncryptionContext":{"app":"a"},"DestinationKeyId":"k","SourceEncryptionContext":{"app":"a","x":"y"}}`, false},
		{`{"CiphertextBlob":"AAEC","DestinationEncryptionContext":{"app":"a"},"DestinationKeyId":"k","SourceEncryptionContext":{"app":"a"} }`, true},
	} {
		in, want := new(kms.ReEncryptInput), new(kms.ReEncryptInput)
		if !fastReEncrypt([]byte(tc.body), in) {
			t.Fatalf("the fast path gave up on %s", tc.body)
		}
		if err := decodeStrict([]byte(tc.body), want); err != nil || !reflect.DeepEqual(in, want) {
			t.Fatalf("%s: fast %+v, strict %+v (%v)", tc.body, in, want, err)
		}
		if got := kms.SameContext(in.SourceEncryptionContext, in.DestinationEncryptionContext); got != tc.same {
			t.Errorf("%s: one map for both: %v, want %v", tc.body, got, tc.same)
		}
	}
}
