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

package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rekey-dev/rekey/internal/kms/awsapi"
)

// kmsServeKubeconfig points KUBECONFIG at a user that may do only what
// rekey kms serve --pod-identity needs of the kube-apiserver: create
// TokenReviews. It proves the RBAC the docs give is enough.
func kmsServeKubeconfig(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	name := "rekey-kms-serve-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}}}
	if err := env.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	user, err := env.Env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
}

// serviceAccountToken makes a ServiceAccount (if needed) and a token for
// it from the TokenRequest API, valid for an hour.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, ns, name, audience string, bound *authnv1.BoundObjectReference) string {
	return serviceAccountTokenFor(t, cs, ns, name, audience, bound, 3600)
}

func serviceAccountTokenFor(t *testing.T, cs kubernetes.Interface, ns, name, audience string, bound *authnv1.BoundObjectReference, exp int64) string {
	t.Helper()
	if bound == nil {
		bound = podFor(t, ns, name)
	}
	tok, err := makeTokenBound(cs, ns, name, audience, exp, bound)
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tok
}

// podFor makes (once) a Pod that runs as the ServiceAccount, for tokens
// bound to it, as a projected token volume's are.
func podFor(t *testing.T, ns, sa string) *authnv1.BoundObjectReference {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa + "-pod"}, Spec: corev1.PodSpec{
		ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}}}}
	if err := env.Client.Create(ctx, pod); err != nil {
		if !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
	}
	return &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
}

// makeToken makes a ServiceAccount (if needed) and a token for it from the
// TokenRequest API.
func makeToken(cs kubernetes.Interface, ns, name, audience string, exp int64) (string, error) {
	return makeTokenBound(cs, ns, name, audience, exp, nil)
}

func makeTokenBound(cs kubernetes.Interface, ns, name, audience string, exp int64, bound *authnv1.BoundObjectReference) (string, error) {
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := env.Client.Create(ctx, sa); err != nil && !strings.Contains(err.Error(), "already exists") {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: &exp, BoundObjectRef: bound}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestKMSServePodIdentity is item 6 of issue 12 through the command: two
// 'rekey kms serve --pod-identity' over one keystore, TLS, a token from
// the TokenRequest API, and the AWS SDK for Go's own container-credentials
// provider configured by the standard environment variables.
func TestKMSServePodIdentity(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	c := newCLI(t)
	c.ok("", "key", "create", "--alias", "alias/app-a")
	c.ok("", "key", "create", "--alias", "alias/app-b")
	c.ok("", "key", "grant", "alias/app-a", "--operations", "decrypt,encrypt", nsA+"/app")
	c.ok("", "key", "grant", "alias/app-b", nsB, "--operations", "decrypt")
	blobA := mustB64(t, c.ok("value of A", "encrypt", "--key", "alias/app-a"))
	blobB := mustB64(t, c.ok("value of B", "encrypt", "--key", "alias/app-b"))

	kmsServeKubeconfig(t)
	certFile, keyFile, pool := writeCert(t, c.dir)
	audit := filepath.Join(c.dir, "audit.log")
	url1, stop1 := startKMS(t, c, "--listen", "127.0.0.1:0", "--pod-identity", "--session-duration", "15m", "--audit-log", audit,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	url2, _ := startKMS(t, c, "--listen", "127.0.0.1:0", "--pod-identity", "--session-duration", "1h", "--audit-log", filepath.Join(c.dir, "audit2.log"),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)

	// The Pod's side: a projected token file and the standard variables.
	tokenFile := filepath.Join(c.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(serviceAccountToken(t, cs, nsA, "app", "rekey", nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     url1 + awsapi.CredentialsPath,
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
		"AWS_CA_BUNDLE":                          certFile,
		"AWS_ENDPOINT_URL_KMS":                   url1,
		"AWS_REGION":                             "local",
		"AWS_CONFIG_FILE":                        filepath.Join(c.dir, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(c.dir, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_ACCESS_KEY_ID":                      "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_ROLE_ARN": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN": "",
	} {
		t.Setenv(k, v)
	}
	// The Go SDK builds its container-credentials client without
	// AWS_CA_BUNDLE (config.resolveHTTPCredProvider): give it the CA the
	// programmatic way (docs/kms.md says so).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(1),
		config.WithEndpointCredentialOptions(func(o *endpointcreds.Options) { o.HTTPClient = hc }))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatalf("credentials from %s: %v", awsapi.CredentialsPath, err)
	}
	if !strings.HasPrefix(creds.AccessKeyID, "ASIA") || len(creds.AccessKeyID) != 20 || creds.SessionToken == "" ||
		creds.Source != endpointcreds.ProviderName || !creds.CanExpire {
		t.Fatalf("credentials: akid %q, token %d bytes, source %s, can expire %v", creds.AccessKeyID, len(creds.SessionToken), creds.Source, creds.CanExpire)
	}

	// With them the stock client decrypts A's value ...
	k := awskms.NewFromConfig(cfg)
	out, err := k.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blobA})
	if err != nil || string(out.Plaintext) != "value of A" {
		t.Fatalf("Decrypt A's blob with session credentials: %v", err)
	}
	if _, err := k.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/app-a"), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt under A's key (granted): %v", err)
	}
	// ... and is denied everything else.
	denials := map[string]error{}
	_, denials["Decrypt B's blob"] = k.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blobB})
	_, denials["Decrypt A's blob naming B's key"] = k.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blobA, KeyId: aws.String("alias/app-b")})
	_, denials["Encrypt under B's key"] = k.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/app-b"), Plaintext: []byte("x")})
	_, denials["GenerateDataKey under A's key (not granted)"] = k.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String("alias/app-a"), NumberOfBytes: aws.Int32(32)})
	_, denials["CreateKey"] = k.CreateKey(ctx, &awskms.CreateKeyInput{})
	_, denials["DescribeKey"] = k.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/app-a")})
	_, denials["ReEncrypt"] = k.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: blobA, DestinationKeyId: aws.String("alias/app-a")})
	_, denials["Encrypt under an alias that does not exist"] = k.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/nope"), Plaintext: []byte("x")})
	for what, err := range denials {
		if apiErrorCode(err) != "AccessDeniedException" {
			t.Errorf("%s: want AccessDeniedException, got %v", what, err)
		}
	}

	// A second replica, sharing only the keystore and the root key,
	// honours the first's credentials.
	k2 := awskms.NewFromConfig(cfg, func(o *awskms.Options) { o.BaseEndpoint = aws.String(url2) })
	if out, err := k2.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blobA}); err != nil || string(out.Plaintext) != "value of A" {
		t.Fatalf("Decrypt on the second replica with the first's credentials: %v", err)
	}

	// The credentials endpoint itself, through the SDK's provider.
	fetch := func(url, token string) (aws.Credentials, error) {
		return endpointcreds.New(url+awsapi.CredentialsPath, func(o *endpointcreds.Options) {
			o.HTTPClient, o.AuthorizationToken = hc, token
		}).Retrieve(ctx)
	}
	wantRefused := func(what string, status int, code string, err error) {
		t.Helper()
		var re interface{ HTTPStatusCode() int }
		if err == nil || apiErrorCode(err) != code || !errors.As(err, &re) || re.HTTPStatusCode() != status {
			t.Errorf("%s: want %d %s, got %v", what, status, code, err)
		}
	}
	fresh, err := fetch(url1, serviceAccountToken(t, cs, nsA, "app", "rekey", nil))
	if d := time.Until(fresh.Expires); err != nil || d < 14*time.Minute || d > 15*time.Minute {
		t.Fatalf("credentials expire in %v, want --session-duration 15m (%v)", d, err)
	}
	_, err = fetch(url1, "")
	wantRefused("no token", http.StatusUnauthorized, "MissingAuthenticationTokenException", err)
	_, err = fetch(url1, serviceAccountToken(t, cs, nsA, "app", "not-rekey", nil))
	wantRefused("a token for another audience", http.StatusForbidden, "AccessDeniedException", err)
	_, err = fetch(url1, "a.b.c")
	wantRefused("a forged token", http.StatusForbidden, "AccessDeniedException", err)
	unbound, err := makeToken(cs, nsA, "app", "rekey", 3600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetch(url1, unbound)
	wantRefused("a token bound to no Pod (kubectl create token)", http.StatusForbidden, "AccessDeniedException", err)
	_, err = fetch(url1, serviceAccountTokenFor(t, cs, nsA, "app", "rekey", nil, 48*3600))
	wantRefused("a token living 48 h (--max-token-lifetime 24h)", http.StatusForbidden, "AccessDeniedException", err)

	// The second replica was started with --session-duration 1h: the
	// credentials still end when a 600 s token does.
	capped, err := fetch(url2, serviceAccountTokenFor(t, cs, nsA, "app", "rekey", nil, 600))
	if err != nil || time.Until(capped.Expires) > 10*time.Minute || time.Until(capped.Expires) < 9*time.Minute {
		t.Fatalf("credentials from a 600 s token with --session-duration 1h: expire in %v, %v", time.Until(capped.Expires), err)
	}

	// A token bound to a Secret is bound to no Pod: refused.
	holder := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "token-holder"}}
	if err := env.Client.Create(ctx, holder); err != nil {
		t.Fatal(err)
	}
	_, err = fetch(url1, serviceAccountToken(t, cs, nsA, "app", "rekey", &authnv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: holder.Name, UID: holder.UID}))
	wantRefused("a token bound to a Secret", http.StatusForbidden, "AccessDeniedException", err)

	// Revocation: a Pod's token works until the Pod is deleted; a token
	// of a ServiceAccount works until it is deleted. The kube-apiserver
	// caches a token it authenticated for 10 s, so the refusal comes
	// within that (polled, not slept).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "workload"}, Spec: corev1.PodSpec{
		ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}}}}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	podBound := serviceAccountToken(t, cs, nsA, "app", "rekey", &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})
	gone := serviceAccountToken(t, cs, nsA, "gone", "rekey", nil)
	for what, tok := range map[string]string{"a token of a live ServiceAccount": gone, "a token bound to a live Pod": podBound} {
		if _, err := fetch(url1, tok); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if err := env.Client.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	// An unscheduled Pod is deleted at once (no kubelet to wait for).
	if err := env.Client.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for what, tok := range map[string]string{"a token of a deleted ServiceAccount": gone, "a token bound to a deleted Pod": podBound} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err = fetch(url1, tok)
			if err != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond) // polling the apiserver's cache out, not waiting for our own code
		}
		wantRefused(what, http.StatusForbidden, "AccessDeniedException", err)
	}

	// Session credentials that are not what the server issued.
	other, err := fetch(url1, serviceAccountToken(t, cs, nsA, "app", "rekey", nil))
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(creds.SessionToken)
	tampered[len(tampered)/2] ^= 1
	static := func(akid, secret, token string, optFns ...func(*awskms.Options)) *awskms.Client {
		return awskms.New(awskms.Options{Region: "local", BaseEndpoint: aws.String(url1), HTTPClient: hc, RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(akid, secret, token)}, optFns...)
	}
	addTokenAfterSigning := func(o *awskms.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("unsignedToken", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				in.Request.(*smithyhttp.Request).Header.Set("X-Amz-Security-Token", creds.SessionToken)
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
		})
	}
	for what, tc := range map[string]struct {
		client *awskms.Client
		code   string
	}{
		"a tampered session token":              {static(creds.AccessKeyID, creds.SecretAccessKey, string(tampered)), "UnrecognizedClientException"},
		"another session's access key id":       {static(other.AccessKeyID, creds.SecretAccessKey, creds.SessionToken), "UnrecognizedClientException"},
		"another session's secret":              {static(creds.AccessKeyID, other.SecretAccessKey, creds.SessionToken), "InvalidSignatureException"},
		"a session access key id without token": {static(creds.AccessKeyID, creds.SecretAccessKey, ""), "UnrecognizedClientException"},
		"a security token added after signing":  {static(creds.AccessKeyID, creds.SecretAccessKey, "", addTokenAfterSigning), "IncompleteSignatureException"},
	} {
		_, err := tc.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blobA})
		if apiErrorCode(err) != tc.code {
			t.Errorf("%s: want %s, got %v", what, tc.code, err)
		}
	}

	// Every denial is on record under the ServiceAccount's name.
	stop1()
	b, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	principal := "system:serviceaccount:" + nsA + ":app"
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var r awsapi.AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		lines = append(lines, r.Principal+" "+r.Operation+" "+r.Code)
		if r.Principal == principal && r.Session == "" {
			t.Errorf("a session's audit line without its access key id: %s", line)
		}
		if r.Session != "" && !strings.HasPrefix(r.Session, "ASIA") {
			t.Errorf("audit session %q", r.Session)
		}
		if r.Principal == principal && r.Operation == "GetCredentials" && r.Code == "" && r.Pod == "" {
			t.Errorf("an issuance audited without the Pod its token is bound to: %s", line)
		}
		if r.Principal == principal && r.Operation == "Decrypt" && r.Code == "" && r.Session != creds.AccessKeyID {
			t.Errorf("the SDK's Decrypt audited under session %q, want %s", r.Session, creds.AccessKeyID)
		}
		if strings.Contains(line, creds.SessionToken) || strings.Contains(line, creds.SecretAccessKey) {
			t.Fatalf("audit line holds a credential: %s", line)
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		principal + " GetCredentials ",
		principal + " Decrypt ",
		principal + " Decrypt AccessDeniedException",
		principal + " CreateKey AccessDeniedException",
		principal + " DescribeKey AccessDeniedException",
		" GetCredentials AccessDeniedException",
		" GetCredentials MissingAuthenticationTokenException",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("audit log has no %q line:\n%s", want, all)
		}
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rekey key grant and revoke: every name validated, flags anywhere, and
// the tags shown by describe and list.
func TestKeyGrantRevoke(t *testing.T) {
	c := newCLI(t)
	arn := strings.TrimSpace(c.ok("", "key", "create", "--alias", "alias/app"))
	for _, args := range [][]string{
		{"alias/app", "team-a"},                                  // no --operations
		{"alias/app", "--operations", "decrypt", "team-a/*"},     // a wildcard
		{"alias/app", "--operations", "decrypt", "*"},            // a wildcard
		{"alias/app", "--operations", "decrypt", "Team-A"},       // not a DNS label
		{"alias/app", "--operations", "re-encrypt", "team-a"},    // not an operation
		{"alias/app", "--operations", "decrypt", "--", "-x"},     // a flag-like name after --
		{"alias/app", "--operations", "decrypt", "team-a", "-x"}, // an unknown flag after a name
		{"alias/app", "--operations", "decrypt"},                 // no names
		{"alias/app", "--operations", "--", "team-a"},            // a flag without its value
	} {
		if _, errOut, code := c.run("", append([]string{"key", "grant"}, args...)...); code != 2 {
			t.Errorf("key grant %q: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
	if tags := c.ok("", "key", "describe", "alias/app"); strings.Contains(tags, "rekey.dev/decrypt") {
		t.Fatalf("a refused grant changed the key:\n%s", tags)
	}
	c.ok("", "key", "grant", "alias/app", "--operations", "decrypt,encrypt", "team-a", "team-b/app")
	c.ok("", "key", "grant", arn, "team-c/web.v2", "--operations", "decrypt") // the flag after a name
	var d struct {
		Arn  string
		Tags map[string]string
	}
	if err := json.Unmarshal([]byte(c.ok("", "key", "describe", "alias/app")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Arn != arn || d.Tags["rekey.dev/decrypt"] != "team-a,team-b/app,team-c/web.v2" || d.Tags["rekey.dev/encrypt"] != "team-a,team-b/app" {
		t.Fatalf("describe after grants: %+v", d)
	}
	if list := c.ok("", "key", "list"); !strings.Contains(list, "WORKLOADS") ||
		!strings.Contains(list, "decrypt=team-a,team-b/app,team-c/web.v2 encrypt=team-a,team-b/app") {
		t.Fatalf("key list:\n%s", list)
	}
	c.ok("", "key", "revoke", "alias/app", "--operations", "encrypt", "team-a", "team-b/app")
	c.ok("", "key", "revoke", "alias/app", "team-b/app")
	d.Tags = nil
	if err := json.Unmarshal([]byte(c.ok("", "key", "describe", "alias/app")), &d); err != nil {
		t.Fatal(err)
	}
	if _, has := d.Tags["rekey.dev/encrypt"]; has || d.Tags["rekey.dev/decrypt"] != "team-a,team-c/web.v2" {
		t.Fatalf("describe after revokes: %+v", d.Tags)
	}
}

// The flags of kms serve --pod-identity are checked before anything is
// served.
func TestKMSServePodIdentityFlags(t *testing.T) {
	c := newCLI(t)
	creds := filepath.Join(c.dir, "creds")
	if err := os.WriteFile(creds, []byte("ASIAIOSFODNN7EXAMPLE s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, args := range map[string][]string{
		"no credentials and no pod identity":   {},
		"a session longer than an hour":        {"--pod-identity", "--session-duration", "61m"},
		"a session shorter than a minute":      {"--pod-identity", "--session-duration", "30s"},
		"a policy without credentials":         {"--pod-identity", "--policy-file", filepath.Join(c.dir, "policy.json")},
		"an empty audience":                    {"--pod-identity", "--token-audience", ""},
		"a static access key like a session's": {"--pod-identity", "--credentials-file", creds},
	} {
		_, errOut, code := c.run("", append([]string{"kms", "serve", "--listen", "127.0.0.1:0"}, args...)...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (usage): %s", what, code, errOut)
		}
	}
}

// The keystore counts as fresh for a while after each successful read,
// and not after that.
func TestFreshness(t *testing.T) {
	now := time.Unix(1796036400, 0)
	f := newFreshness(func() time.Time { return now }, 30*time.Second)
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	if err := f.check(); err == nil {
		t.Fatal("31 s after the last read: fresh")
	}
	f.ok()
	if err := f.check(); err != nil {
		t.Fatalf("after a read: %v", err)
	}
}

// --token-audience may not be the kube-apiserver's own audience (review
// 12, finding 15): the usual defaults, and whatever the Pod's own default
// token names.
func TestCheckAudience(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	enc := base64.RawURLEncoding.EncodeToString
	if err := os.WriteFile(tokenFile, []byte(enc([]byte(`{"alg":"RS256"}`))+"."+enc([]byte(`{"aud":["https://issuer.example"]}`))+".sig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, aud := range []string{"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local", "https://issuer.example"} {
		if err := checkAudience(aud, tokenFile); !errors.Is(err, errUsage) {
			t.Errorf("--token-audience %s: want a usage error, got %v", aud, err)
		}
	}
	for _, aud := range []string{"rekey", "rekey.example/kms"} {
		if err := checkAudience(aud, tokenFile); err != nil {
			t.Errorf("--token-audience %s: %v", aud, err)
		}
	}
	if err := checkAudience("https://issuer.example", filepath.Join(dir, "none")); err != nil {
		t.Errorf("no token file: %v", err)
	}
}
