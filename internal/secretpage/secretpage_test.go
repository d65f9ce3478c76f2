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

package secretpage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/rekey-dev/rekey/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, "", func(e *testenv.Env) { env = e }))
}

// meter counts the bytes read from each response body, in request order.
type meter struct {
	mu    sync.Mutex
	reads []*int64
}

type countingBody struct {
	io.ReadCloser
	m *meter
	n *int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.m.mu.Lock()
	*b.n += int64(n)
	b.m.mu.Unlock()
	return n, err
}

func (m *meter) RoundTrip(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		m.mu.Lock()
		n := new(int64)
		m.reads = append(m.reads, n)
		m.mu.Unlock()
		resp.Body = countingBody{ReadCloser: resp.Body, m: m, n: n}
		return resp, nil
	})
}

func (m *meter) read() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, len(m.reads))
	for i, n := range m.reads {
		out[i] = *n
	}
	m.reads = nil
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// lister builds a Lister with the given budget whose response bodies are
// metered.
func lister(t *testing.T, budget int64) (*APILister, *meter) {
	t.Helper()
	m := &meter{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(m.RoundTrip)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewAPILister(cfg, hc, budget)
	if err != nil {
		t.Fatal(err)
	}
	return l, m
}

// create makes n Secrets named prefix-NN with one value of size bytes and,
// when annotation > 0, an annotation of that many bytes.
func create(t *testing.T, ns, prefix string, n, size, annotation int, lbls map[string]string) {
	t.Helper()
	for i := range n {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%02d", prefix, i), Namespace: ns, Labels: lbls},
			Data:       map[string][]byte{"v": bytes.Repeat([]byte{byte('a' + i%26)}, size)},
		}
		if annotation > 0 {
			s.Annotations = map[string]string{"example.com/big": strings.Repeat("x", annotation)}
		}
		if err := env.Client.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

// all lists every page, checking each with check, and returns the names in
// the order listed.
func all(t *testing.T, l Lister, req Request, check func(*Page)) []string {
	t.Helper()
	var names []string
	for {
		p, err := l.Page(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		check(p)
		for _, it := range p.Items {
			names = append(names, it.Meta.Name)
		}
		if req.Continue = p.Continue; req.Continue == "" {
			return names
		}
	}
}

func want(prefix string, n int) []string {
	names := make([]string, 0, n)
	for i := range n {
		names = append(names, fmt.Sprintf("%s-%02d", prefix, i))
	}
	return names
}

// A namespace of small Secrets is listed whole: one request per page, each
// Secret with its data, every Secret once.
func TestSmallSecretsComeWhole(t *testing.T) {
	ns := env.Namespace(t)
	create(t, ns, "s", 25, 300, 0, nil)
	l, m := lister(t, 1<<20)
	pages := 0
	var kept []Item
	names := all(t, l, Request{Namespace: ns, Limit: 10}, func(p *Page) {
		kept = append(kept, p.Items...)
		pages++
		if !p.Whole {
			t.Fatalf("page %d not whole", pages)
		}
		for _, it := range p.Items {
			if it.Secret == nil || len(it.Secret.Data["v"]) != 300 || it.Secret.Name != it.Meta.Name || it.Meta.ResourceVersion == "" {
				t.Fatalf("item %s: %+v", it.Meta.Name, it.Secret)
			}
		}
	})
	if !slices.Equal(names, want("s", 25)) || pages != 3 {
		t.Fatalf("%d pages, names %v", pages, names)
	}
	if reads := m.read(); len(reads) != 3 {
		t.Fatalf("%d requests for 3 pages", len(reads))
	}
	// Response buffers are reused between pages: what a page returned must
	// not share them.
	for i, it := range kept {
		if !bytes.Equal(it.Secret.Data["v"], bytes.Repeat([]byte{byte('a' + i%26)}, 300)) || it.Secret.Name != fmt.Sprintf("s-%02d", i) {
			t.Fatalf("Secret %d changed after later pages were read: %s %q", i, it.Secret.Name, it.Secret.Data["v"][:8])
		}
	}
}

// A page over the budget is read only up to the budget, then listed again
// as metadata: the large data is never held, and every Secret is listed
// once.
func TestLargeSecretsFallBackToMetadata(t *testing.T) {
	ns := env.Namespace(t)
	create(t, ns, "a", 4, 300, 0, nil)
	create(t, ns, "b", 6, 100<<10, 0, nil) // 600 KiB of data
	const budget = 128 << 10
	l, m := lister(t, budget)
	p, err := l.Page(context.Background(), Request{Namespace: ns, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if p.Whole || len(p.Items) != 10 || p.Continue != "" {
		t.Fatalf("whole %v, %d items, continue %q", p.Whole, len(p.Items), p.Continue)
	}
	for _, it := range p.Items {
		if it.Secret != nil || it.Meta.Name == "" || it.Meta.ResourceVersion == "" {
			t.Fatalf("item %+v", it)
		}
	}
	reads := m.read()
	if len(reads) != 2 || reads[0] > budget+1 || reads[1] > budget {
		t.Fatalf("bytes read per response: %v (budget %d)", reads, budget)
	}

	// Paged, the pages that fit come whole and the others as metadata,
	// and the continue tokens carry over between the two.
	var kinds []bool
	names := all(t, l, Request{Namespace: ns, Limit: 3}, func(p *Page) { kinds = append(kinds, p.Whole) })
	if !slices.Equal(names, append(want("a", 4), want("b", 6)...)) {
		t.Fatalf("names %v", names)
	}
	// a0-a2 fit; a3,b0,b1 and b2-b4 do not; b5 alone (100 KiB) fits.
	if !slices.Equal(kinds, []bool{true, false, false, true}) {
		t.Fatalf("pages whole: %v", kinds)
	}
}

// A metadata page over the budget (large annotations) is asked for again
// with half as many objects; one object over the budget is an error, not
// an unbounded read.
func TestLargeMetadataHalvesThePage(t *testing.T) {
	ns := env.Namespace(t)
	create(t, ns, "m", 10, 10, 20<<10, nil) // 200 KiB of annotations
	const budget = 64 << 10
	l, m := lister(t, budget)
	var sizes []int
	names := all(t, l, Request{Namespace: ns, Limit: 10, MetadataOnly: true}, func(p *Page) {
		if p.Whole {
			t.Fatal("a metadata-only request came whole")
		}
		sizes = append(sizes, len(p.Items))
	})
	if !slices.Equal(names, want("m", 10)) {
		t.Fatalf("names %v", names)
	}
	if sizes[0] != 3 { // 10, then 5, then 3 objects
		t.Fatalf("page sizes %v", sizes)
	}
	for _, n := range m.read() {
		if n > budget+1 {
			t.Fatalf("read %d bytes of one response (budget %d)", n, budget)
		}
	}

	big := env.Namespace(t)
	create(t, big, "z", 1, 10, 70<<10, nil)
	for _, metadataOnly := range []bool{true, false} {
		_, err := l.Page(context.Background(), Request{Namespace: big, Limit: 10, MetadataOnly: metadataOnly})
		if !errors.Is(err, ErrOverBudget) {
			t.Fatalf("metadata only %v: error %v, want ErrOverBudget", metadataOnly, err)
		}
	}
}

// The label selector is the apiserver's to apply; the apiserver's errors
// come back as its typed errors.
func TestSelectorAndErrors(t *testing.T) {
	ns := env.Namespace(t)
	create(t, ns, "x", 3, 10, 0, map[string]string{"team": "x"})
	create(t, ns, "y", 2, 10, 0, map[string]string{"team": "y"})
	l, _ := lister(t, 1<<20)
	sel := labels.SelectorFromSet(labels.Set{"team": "y"})
	if names := all(t, l, Request{Namespace: ns, Limit: 10, Selector: sel}, func(*Page) {}); !slices.Equal(names, want("y", 2)) {
		t.Fatalf("names %v", names)
	}
	_, err := l.Page(context.Background(), Request{Namespace: ns, Limit: 10, Continue: "not-a-token"})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("error %v (%T), want a BadRequest from the apiserver", err, err)
	}
	if _, err := NewAPILister(env.Config, http.DefaultClient, -1); err == nil {
		t.Fatal("a negative budget was taken")
	}
}

// An answer of the wrong kind, or a list without a resourceVersion, is a
// ReadError, never an empty, final page (which would end a run early).
func TestAnswersOfTheWrongKindAreErrors(t *testing.T) {
	bodies := map[string]string{
		"empty object":               `{}`,
		"a Status":                   `{"kind":"Status","apiVersion":"v1","status":"Success"}`,
		"a SecretList for metadata":  `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}`,
		"a list with no version":     `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{},"items":[]}`,
		"a metadata list for whole":  `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"5"},"items":[]}`,
		"a body cut short":           `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"a"`,
		"a Secret list, no version":  `{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[]}`,
		"an unknown kind":            `{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}`,
		"not JSON at all":            `<html>proxy error</html>`,
		"a list of the wrong group":  `{"kind":"SecretList","apiVersion":"example.com/v1","metadata":{"resourceVersion":"5"},"items":[]}`,
		"a whole list with no items": `{"kind":"SecretList","apiVersion":"v1"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, body)
			}))
			defer srv.Close()
			l, err := NewAPILister(&rest.Config{Host: srv.URL}, srv.Client(), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, metadataOnly := range []bool{false, true} {
				p, err := l.Page(context.Background(), Request{Namespace: "ns", Limit: 10, MetadataOnly: metadataOnly})
				var re *ReadError
				// A SecretList is the right answer to a whole request, a
				// metadata list to a metadata one.
				ok := (name == "a SecretList for metadata" && !metadataOnly) || (name == "a metadata list for whole" && metadataOnly)
				if ok {
					if err != nil {
						t.Fatalf("metadata only %v: %v", metadataOnly, err)
					}
					continue
				}
				if !errors.As(err, &re) || p != nil {
					t.Fatalf("metadata only %v: page %+v, error %v (%T), want a ReadError", metadataOnly, p, err, err)
				}
			}
		})
	}
}

// The budget holds for the decoded page too: Secrets of thousands of empty
// keys are small on the wire and large in memory, and are listed as
// metadata; their metadata pages, equally small and large, are halved.
func TestManySmallKeysCountDecoded(t *testing.T) {
	ns := env.Namespace(t)
	for i := range 8 {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("k-%02d", i), Namespace: ns,
			Labels: map[string]string{}}, Data: map[string][]byte{}}
		for j := range 2000 {
			s.Data[fmt.Sprintf("k%d", j)] = nil
			s.Labels[fmt.Sprintf("l%d", j)] = ""
		}
		if err := env.Client.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	const budget = 1 << 20 // 8 x 2000 x 2 entries: ~0.7 MiB on the wire (with managedFields), over 2 MiB decoded
	l, m := lister(t, budget)
	var whole []bool
	var sizes []int
	names := all(t, l, Request{Namespace: ns, Limit: 8}, func(p *Page) {
		whole = append(whole, p.Whole)
		sizes = append(sizes, len(p.Items))
		if !l.fits(p) && len(p.Items) > 1 {
			t.Fatalf("a page of %d items over the budget decoded", len(p.Items))
		}
	})
	if !slices.Equal(names, want("k", 8)) || slices.Contains(whole, true) || sizes[0] >= 8 {
		t.Fatalf("names %v, whole %v, page sizes %v", names, whole, sizes)
	}
	// Every response fitted the wire budget: the decoded size is what sent
	// the pages to metadata.
	for _, n := range m.read() {
		if n > budget {
			t.Fatalf("read %d bytes of one response: the wire budget was what stopped it", n)
		}
	}
}
