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

package manifests

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rekey-dev/rekey/internal/kms"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
)

type env struct {
	t      *testing.T
	engine *kms.Engine
	keys   *embedded.Provider
}

func newEnv(t *testing.T, aliases ...string) *env {
	t.Helper()
	e, err := kms.New(context.Background(), kms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range aliases {
		k, err := e.CreateKey(context.Background(), &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: a, TargetKeyID: k.KeyMetadata.KeyID}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, engine: e, keys: embedded.New(e)}
}

// blob encrypts pt under key with ec, as base64.
func (v *env) blob(key, pt string, ec map[string]string) string {
	v.t.Helper()
	out, err := v.engine.Encrypt(context.Background(), &kms.EncryptInput{KeyID: key, Plaintext: []byte(pt), EncryptionContext: ec})
	if err != nil {
		v.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out.CiphertextBlob)
}

// open decrypts a base64 blob and says which key it is under.
func (v *env) open(b64 string, ec map[string]string) (pt, keyARN string) {
	v.t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		v.t.Fatal(err)
	}
	out, err := v.engine.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: raw, EncryptionContext: ec})
	if err != nil {
		v.t.Fatalf("decrypt: %v", err)
	}
	return string(out.Plaintext), out.KeyID
}

func (v *env) arn(alias string) string {
	v.t.Helper()
	arn, _, err := v.keys.DescribeKey(context.Background(), alias)
	if err != nil {
		v.t.Fatal(err)
	}
	return arn
}

func (v *env) rotation(inspect bool, from []string) *Rotation {
	v.t.Helper()
	r := &Rotation{Keys: v.keys, SourceKeyIDs: from, DestinationKeyID: "alias/new"}
	if inspect {
		r.Inspector = v.keys
	}
	if err := r.Resolve(context.Background()); err != nil {
		v.t.Fatal(err)
	}
	return r
}

// valueOf finds the value written after "  KEY: " in a manifest.
func valueOf(t *testing.T, doc, key string) string {
	t.Helper()
	for line := range strings.Lines(doc) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+": "); ok {
			v, _, _ = strings.Cut(v, " #")
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	t.Fatalf("no %s in:\n%s", key, doc)
	return ""
}

// A file of several documents, comments and styles: only the annotated
// blobs change, byte for byte everything else stays, and each new blob
// decrypts under the destination to the old value.
func TestReencryptChangesOnlyTheBlobs(t *testing.T) {
	for _, inspect := range []bool{true, false} {
		t.Run(fmt.Sprintf("inspector=%v", inspect), func(t *testing.T) {
			v := newEnv(t, "alias/old", "alias/new")
			ec := map[string]string{"app": "billing"}
			src := fmt.Sprintf(`# The billing team's Secrets.
apiVersion: v1
kind: ConfigMap   # not a Secret: left alone
metadata: {name: settings, namespace: billing}
data:
  password: %[1]s
---
apiVersion: v1
kind: Secret
metadata:
  name: billing-db
  namespace: billing
  annotations:
    rekey.dev/encrypted-keys: "password, apiToken,dsn"
    rekey.dev/encryption-context: '{"app":"billing"}'
  labels: {team: billing}
type: Opaque
data:
  # rotated by rekey
  password: %[2]s   # trailing comment
  apiToken: "%[3]s"
  plain: aGVsbG8=
stringData:
    dsn:    '%[4]s'
---
apiVersion: v1
kind: Secret
metadata:
  name: unannotated
data:
  password: %[5]s
`, v.blob("alias/old", "not-a-secret", ec), v.blob("alias/old", "PLAINTEXT-password", ec),
				v.blob("alias/old", "PLAINTEXT-token", ec), v.blob("alias/old", "PLAINTEXT-dsn", ec),
				v.blob("alias/old", "PLAINTEXT-other", nil))
			r := v.rotation(inspect, []string{"alias/old"})
			out, findings, err := r.Reencrypt(context.Background(), "billing.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			// Three blobs rotated; the Secret without the annotations is
			// only reported, not read.
			if len(findings) != 4 || findings[3].Outcome != NotAnnotated || findings[3].Secret != "unannotated" {
				t.Fatalf("findings: %v", findings)
			}
			for _, f := range findings[:3] {
				if f.Outcome != Rotated {
					t.Fatalf("finding: %v", f)
				}
			}
			// Line by line: only the three blob lines differ, and only in
			// their values.
			in, got := strings.Split(src, "\n"), strings.Split(string(out), "\n")
			if len(in) != len(got) {
				t.Fatalf("%d lines became %d", len(in), len(got))
			}
			diff := 0
			for i := range in {
				if in[i] == got[i] {
					continue
				}
				diff++
				key := strings.TrimSpace(strings.SplitN(in[i], ":", 2)[0])
				old, now := valueOf(t, in[i], key), valueOf(t, got[i], key)
				if strings.Replace(in[i], old, now, 1) != got[i] {
					t.Fatalf("line %d changed beyond its value:\n%s\n%s", i+1, in[i], got[i])
				}
				pt, keyARN := v.open(now, ec)
				if keyARN != v.arn("alias/new") || pt != "PLAINTEXT-"+map[string]string{"password": "password", "apiToken": "token", "dsn": "dsn"}[key] {
					t.Fatalf("%s: %q under %s", key, pt, keyARN)
				}
			}
			if diff != 3 {
				t.Fatalf("%d lines changed, want 3:\n%s", diff, out)
			}

			// Again: nothing is under the source key any more.
			fs, err := r.Check(context.Background(), "billing.yaml", out)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if f.Outcome != Current && f.Outcome != NotAnnotated {
					t.Fatalf("after: %v", f)
				}
			}
			fs, err = r.Check(context.Background(), "billing.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if f.Outcome != UnderSource && f.Outcome != NotAnnotated {
					t.Fatalf("before: %v", f)
				}
			}
		})
	}
}

func secretDoc(name, annotations, data string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: app\n  annotations:\n%s\ndata:\n%s\n", name, annotations, data)
}

// A Secret changes whole or not at all: one bad value, a blob under an
// undeclared key, or a wrong context leaves every value of that Secret as
// it was, while the others in the file are re-encrypted.
func TestAFailingSecretIsLeftWhole(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/new", "alias/other")
	good := secretDoc("good", `    rekey.dev/encrypted-keys: "*"`, "  a: "+v.blob("alias/old", "A", nil))
	cases := map[string]struct {
		doc    string
		reason string
	}{
		"a value that is not base64": {secretDoc("bad", `    rekey.dev/encrypted-keys: a,b`,
			"  a: "+v.blob("alias/old", "A", nil)+"\n  b: not*base64"), "InvalidCiphertextException"},
		"an annotated key missing": {secretDoc("bad", `    rekey.dev/encrypted-keys: a,b`,
			"  a: "+v.blob("alias/old", "A", nil)), "DataKeyMissing"},
		"a blob under an undeclared key": {secretDoc("bad", `    rekey.dev/encrypted-keys: a,b`,
			"  a: "+v.blob("alias/old", "A", nil)+"\n  b: "+v.blob("alias/other", "B", nil)), "SourceKeyNotDeclared"},
		"the wrong context": {secretDoc("bad", "    rekey.dev/encrypted-keys: a,b\n    rekey.dev/encryption-context: '{\"app\":\"x\"}'",
			"  a: "+v.blob("alias/old", "A", map[string]string{"app": "x"})+"\n  b: "+v.blob("alias/old", "B", nil)), "InvalidCiphertextException"},
		"a context that is not JSON": {secretDoc("bad", "    rekey.dev/encrypted-keys: a\n    rekey.dev/encryption-context: 'app=x'",
			"  a: "+v.blob("alias/old", "A", nil)), "InvalidEncryptionContext"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			src := good + "---\n" + tc.doc
			r := v.rotation(true, []string{"alias/old"})
			out, findings, err := r.Reencrypt(context.Background(), "f.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			bad, rest, _ := strings.Cut(string(out), "---\n")
			if rest != tc.doc {
				t.Fatalf("the failing Secret changed:\n%s\nwant\n%s", rest, tc.doc)
			}
			if bad == good {
				t.Fatal("the good Secret was not re-encrypted")
			}
			reasons := ""
			for _, f := range findings {
				if f.Secret == "bad" {
					if f.Outcome != Failed {
						t.Fatalf("%v", f)
					}
					reasons += f.Reason + " "
				}
			}
			if !strings.Contains(reasons, tc.reason) {
				t.Fatalf("reasons %q, want %s", reasons, tc.reason)
			}
		})
	}
}

// Without an inspector (an opaque provider), the key service's answer is
// checked: a blob under another key is refused by the single declared
// SourceKeyId and never written; with two declared sources, the returned
// SourceKeyId is compared.
func TestTheAnswerIsChecked(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/old2", "alias/new", "alias/other")
	doc := secretDoc("s", "    rekey.dev/encrypted-keys: a", "  a: "+v.blob("alias/other", "A", nil))
	for _, sources := range [][]string{{"alias/old"}, {"alias/old", "alias/old2"}} {
		r := v.rotation(false, sources)
		out, findings, err := r.Reencrypt(context.Background(), "f.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != doc || len(findings) != 1 || findings[0].Outcome != Failed {
			t.Fatalf("sources %v: %v\n%s", sources, findings, out)
		}
		want := map[int]string{1: "IncorrectKeyException", 2: "UnexpectedSourceKey"}[len(sources)]
		if findings[0].Reason != want {
			t.Fatalf("sources %v: reason %s, want %s", sources, findings[0].Reason, want)
		}
	}
}

// A blob over several lines cannot be replaced in place: an error, and
// nothing is returned to write.
func TestBlockScalarsAreRefused(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/new")
	b := v.blob("alias/old", "A", nil)
	for name, value := range map[string]string{
		"literal":              "|\n    " + b,
		"folded":               ">-\n    " + b[:20] + "\n    " + b[20:],
		"plain over two lines": b[:20] + "\n    " + b[20:],
	} {
		t.Run(name, func(t *testing.T) {
			doc := secretDoc("s", "    rekey.dev/encrypted-keys: a", "  a: "+value)
			r := v.rotation(true, []string{"alias/old"})
			out, _, err := r.Reencrypt(context.Background(), "f.yaml", []byte(doc))
			if !errors.Is(err, ErrLayout) || out != nil {
				t.Fatalf("err %v, out %q", err, out)
			}
		})
	}
}

// Placeholders are filled as the controller fills them; {namespace}
// without metadata.namespace is an error for that Secret, not a guess.
func TestContextPlaceholders(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/new")
	ec := map[string]string{"secret": "app/s/a"}
	doc := secretDoc("s", "    rekey.dev/encrypted-keys: a", "  a: "+v.blob("alias/old", "A", ec))
	r := v.rotation(true, []string{"alias/old"})
	r.SourceEncryptionContext = map[string]string{"secret": "{namespace}/{name}/{key}"}
	out, findings, err := r.Reencrypt(context.Background(), "f.yaml", []byte(doc))
	if err != nil || len(findings) != 1 || findings[0].Outcome != Rotated {
		t.Fatalf("%v %v", findings, err)
	}
	if pt, _ := v.open(valueOf(t, string(out), "a"), ec); pt != "A" {
		t.Fatalf("plaintext %q", pt)
	}
	noNS := strings.Replace(doc, "  namespace: app\n", "", 1)
	out, findings, err = r.Reencrypt(context.Background(), "f.yaml", []byte(noNS))
	if err != nil || string(out) != noNS || len(findings) != 1 || findings[0].Reason != "NamespaceUnknown" {
		t.Fatalf("%v %v", findings, err)
	}
}

// The documents that are not annotated Secrets, and a file with none, come
// back unchanged (the same bytes, so nothing is rewritten).
func TestNothingToDo(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/new")
	r := v.rotation(true, []string{"alias/old"})
	src := "# nothing here\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {a: YQ==}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: y}\n"
	out, findings, err := r.Reencrypt(context.Background(), "f.yaml", []byte(src))
	// The Secret with data is reported NotAnnotated (for Unannotated to
	// match against the run's annotated Secrets), the empty one not at all.
	if err != nil || string(out) != src || len(findings) != 1 || findings[0].Outcome != NotAnnotated || findings[0].Secret != "x" ||
		findings[0].Line != 2 || findings[0].String() != "f.yaml:2: Secret x: NotAnnotated" {
		t.Fatalf("%q %v %v", out, findings, err)
	}
	if _, _, err := r.Reencrypt(context.Background(), "f.yaml", []byte("a: [")); err == nil {
		t.Fatal("a file that does not parse: no error")
	}
}

// TestUnannotated: an unannotated Secret counts as a patch of an annotated
// one when the names match and the namespaces do not differ (a patch often
// leaves the namespace to kustomize).
func TestUnannotated(t *testing.T) {
	annotated := []Finding{
		{Secret: "db", Namespace: "billing", Outcome: Rotated},
		{Secret: "api", Outcome: Current},
	}
	for _, tc := range []struct {
		f    Finding
		want bool
	}{
		{Finding{Secret: "db", Namespace: "billing"}, true},
		{Finding{Secret: "db"}, true},
		{Finding{Secret: "db", Namespace: "shop"}, false},
		{Finding{Secret: "api", Namespace: "anything"}, true},
		{Finding{Secret: "tls", Namespace: "billing"}, false},
	} {
		tc.f.Outcome = NotAnnotated
		got := Unannotated(append(slices.Clone(annotated), tc.f))
		if (len(got) == 1 && got[0] == tc.f) != tc.want || len(got) > 1 {
			t.Errorf("%+v: Unannotated = %+v, want it listed: %v", tc.f, got, tc.want)
		}
	}
}

// lying answers ReEncrypt with another key's ARN in KeyId or SourceKeyId.
type lying struct {
	*embedded.Provider
	keyID, sourceKeyID string
}

func (l lying) ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error) {
	out, err := l.Provider.ReEncrypt(ctx, in)
	if err != nil {
		return nil, err
	}
	if l.keyID != "" {
		out.KeyID = l.keyID
	}
	if l.sourceKeyID != "" {
		out.SourceKeyID = l.sourceKeyID
	}
	return out, nil
}

// A key service whose answer names another destination or source key is
// not believed: nothing of that Secret is written.
func TestALyingKeyServiceWritesNothing(t *testing.T) {
	v := newEnv(t, "alias/old", "alias/new", "alias/other")
	doc := secretDoc("s", "    rekey.dev/encrypted-keys: a", "  a: "+v.blob("alias/old", "A", nil))
	for reason, keys := range map[string]lying{
		"UnexpectedDestinationKey": {Provider: v.keys, keyID: v.arn("alias/other")},
		"UnexpectedSourceKey":      {Provider: v.keys, sourceKeyID: v.arn("alias/other")},
	} {
		r := &Rotation{Keys: keys, SourceKeyIDs: []string{"alias/old"}, DestinationKeyID: "alias/new"}
		if err := r.Resolve(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, findings, err := r.Reencrypt(context.Background(), "f.yaml", []byte(doc))
		if err != nil || string(out) != doc || len(findings) != 1 || findings[0].Reason != reason {
			t.Fatalf("%s: %v %v\n%s", reason, findings, err, out)
		}
	}
}

// The last safety line: a result that differs from the original anywhere
// but in the edited scalars is refused.
func TestSameButBlobsRefusesOtherChanges(t *testing.T) {
	src := []byte("a: one # c\nb: two\n")
	lines := lineStarts(src)
	docs, err := decodeAll(src)
	if err != nil {
		t.Fatal(err)
	}
	valueB := docs[0].Content[0].Content[3]
	span, err := scalarSpan(src, lines, valueB)
	if err != nil {
		t.Fatal(err)
	}
	e := span.with("three")
	if err := sameButBlobs(src, apply(src, []edit{e}), []edit{e}); err != nil {
		t.Fatalf("a value edit refused: %v", err)
	}
	for name, out := range map[string]string{
		"a comment":          "a: one # d\nb: three\n",
		"another value":      "a: two # c\nb: three\n",
		"a key":              "a: one # c\nc: three\n",
		"a style":            "a: one # c\nb: 'three'\n",
		"a document more":    "a: one # c\nb: three\n---\nx: y\n",
		"not parsing at all": "a: one # c\nb: [three\n",
	} {
		if err := sameButBlobs(src, []byte(out), []edit{e}); err == nil {
			t.Errorf("%s changed: not refused", name)
		}
	}
}
