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

// Package kmstls tests hack/kms-tls.sh with Go's certificate verifier:
// workloads add its CA to the trust of every connection they make
// (docs/workloads.md), so the CA's name constraints must let it vouch for
// the key service's names and nothing else, and the serving certificates
// the script makes — for the Service, and for 127.0.0.1 and localhost as
// the end-to-end test asks (test/e2e/workload_test.go) — must still verify.
package kmstls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// script runs hack/kms-tls.sh with args and returns its output and error.
func script(t *testing.T, args ...string) (string, error) {
	t.Helper()
	for _, tool := range []string{"bash", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH", tool)
		}
	}
	out, err := exec.Command(filepath.Join("..", "..", "hack", "kms-tls.sh"), args...).CombinedOutput()
	return string(out), err
}

func mustScript(t *testing.T, args ...string) {
	t.Helper()
	if out, err := script(t, args...); err != nil {
		t.Fatalf("hack/kms-tls.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// readCerts reads every certificate of a PEM file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var p *pem.Block
		if p, b = pem.Decode(b); p == nil {
			return out
		}
		c, err := x509.ParseCertificate(p.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verify verifies the leaf of dir/tls.crt for name against dir/ca.crt only.
func verify(t *testing.T, dir, name string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCerts(t, filepath.Join(dir, "ca.crt"))[0])
	leaf := readCerts(t, filepath.Join(dir, "tls.crt"))[0]
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
	return err
}

// signWithCA makes a certificate for names signed by dir's CA key, as
// whoever holds ca.key could, whatever the script would refuse.
func signWithCA(t *testing.T, dir string, dnsNames []string, ips []net.IP) *x509.Certificate {
	t.Helper()
	ca := readCerts(t, filepath.Join(dir, "ca.crt"))[0]
	b, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatal("ca.key: no PEM block")
	}
	caKey, err := x509.ParseECPrivateKey(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "forged"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Review 12, finding 5: the CA had no name constraints, so a workload that
// trusts it as docs/workloads.md says trusted it for sts.amazonaws.com,
// github.com, any site. Now Go refuses a certificate for another name even
// when it is signed with the CA's key.
func TestCAVouchesOnlyForTheKeyService(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustScript(t, "ca", dir)
	ca := readCerts(t, filepath.Join(dir, "ca.crt"))[0]
	if !ca.PermittedDNSDomainsCritical {
		t.Error("the CA's name constraints are not critical")
	}
	wantDNS := []string{"rekey-kms", "rekey-kms.rekey-system", ".svc", ".svc.cluster.local", "localhost"}
	if !slices.Equal(ca.PermittedDNSDomains, wantDNS) {
		t.Errorf("permitted DNS %q, want %q", ca.PermittedDNSDomains, wantDNS)
	}
	ranges := make([]string, 0, len(ca.PermittedIPRanges))
	for _, r := range ca.PermittedIPRanges {
		ranges = append(ranges, r.String())
	}
	if want := []string{"127.0.0.0/8", "::1/128"}; !slices.Equal(ranges, want) {
		t.Errorf("permitted IP ranges %q, want %q", ranges, want)
	}
	if len(ca.ExcludedDNSDomains)+len(ca.ExcludedIPRanges)+len(ca.PermittedEmailAddresses)+len(ca.PermittedURIDomains) > 0 {
		t.Errorf("unexpected constraints: %+v", ca)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, tc := range []struct {
		dns []string
		ips []net.IP
		as  string
	}{
		{dns: []string{"sts.amazonaws.com"}, as: "sts.amazonaws.com"},
		{dns: []string{"kms.amazonaws.com", "rekey-kms"}, as: "rekey-kms"}, // one bad name spoils the certificate
		{dns: []string{"github.com"}, as: "github.com"},
		{dns: []string{"rekey-kms.evil.example"}, as: "rekey-kms.evil.example"},
		{dns: []string{"svc"}, as: "svc"},
		{ips: []net.IP{net.ParseIP("10.0.0.1")}, as: "10.0.0.1"},
		{ips: []net.IP{net.ParseIP("169.254.169.254")}, as: "169.254.169.254"},
	} {
		leaf := signWithCA(t, dir, tc.dns, tc.ips)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.as})
		var invalid x509.CertificateInvalidError
		if !errors.As(err, &invalid) || invalid.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("a certificate for %v %v signed with the CA's key, verified for %s: %v, want CANotAuthorizedForThisName", tc.dns, tc.ips, tc.as, err)
		}
	}
	// Inside the constraints, the key signs what the cluster needs.
	leaf := signWithCA(t, dir, []string{"rekey-kms.rekey-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")})
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "rekey-kms.rekey-system.svc"}); err != nil {
		t.Errorf("a certificate for the Service: %v", err)
	}

	// The script itself refuses such a name and writes nothing.
	if out, err := script(t, "cert", dir, "sts.amazonaws.com"); err == nil || !strings.Contains(out, "does not vouch for DNS:sts.amazonaws.com") {
		t.Errorf("cert sts.amazonaws.com: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused cert wrote tls.crt: %v", err)
	}
}

// The serving certificates the script makes still verify: the Service's
// names (the default), and 127.0.0.1 and localhost as the end-to-end test
// asks, there through a TLS handshake with a client trusting the CA only.
func TestServingCertificatesVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustScript(t, "ca", dir)
	mustScript(t, "cert", dir)
	for _, name := range []string{"rekey-kms", "rekey-kms.rekey-system", "rekey-kms.rekey-system.svc", "rekey-kms.rekey-system.svc.cluster.local"} {
		if err := verify(t, dir, name); err != nil {
			t.Errorf("the default certificate for %s: %v", name, err)
		}
	}
	if err := verify(t, dir, "other.rekey-system.svc"); err == nil {
		t.Error("the default certificate verifies for a name it does not hold")
	}

	mustScript(t, "cert", dir, "127.0.0.1", "localhost") // test/e2e/workload_test.go
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if err := verify(t, dir, name); err != nil {
			t.Errorf("the end-to-end test's certificate for %s: %v", name, err)
		}
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(readCerts(t, filepath.Join(dir, "ca.crt"))[0])
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(srv.URL) // https://127.0.0.1:PORT, as the end-to-end workload calls it
	if err != nil {
		t.Fatalf("GET %s trusting the CA only: %v", srv.URL, err)
	}
	_ = resp.Body.Close()

	for _, names := range [][]string{{"127.0.0.1"}, {"::1"}, {"localhost"}} { // an IP-only certificate has no common name to trip OpenSSL
		mustScript(t, append([]string{"cert", dir}, names...)...)
		if err := verify(t, dir, names[0]); err != nil {
			t.Errorf("a certificate for %v: %v", names, err)
		}
	}
}

// Names given to `hack/kms-tls.sh ca` widen the constraints, for a cluster
// domain other than cluster.local or a Service IP.
func TestCAExtraNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustScript(t, "ca", dir, ".svc.example.org", "10.96.0.0/255.240.0.0", "fd00::10")
	mustScript(t, "cert", dir, "rekey-kms.rekey-system.svc.example.org", "10.96.0.10", "fd00::10")
	for _, name := range []string{"rekey-kms.rekey-system.svc.example.org", "10.96.0.10", "fd00::10"} {
		if err := verify(t, dir, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if out, err := script(t, "cert", dir, "10.112.0.1"); err == nil {
		t.Errorf("cert 10.112.0.1, outside 10.96.0.0/12: accepted\n%s", out)
	}
	if out, err := script(t, "ca", filepath.Join(t.TempDir(), "bad"), "a,permitted;DNS:.com"); err == nil {
		t.Errorf("ca with a name holding a comma: accepted\n%s", out)
	}
}
