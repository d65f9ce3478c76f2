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

// Package secretpage reads a namespace's Secrets one page at a time within a
// byte budget.
//
// A page is first asked for whole (every Secret with its data, one LIST).
// The response is read through the budget: when it fits, the page comes
// back with every Secret, and a rotation costs the apiserver one LIST share
// and one UPDATE per Secret. When it does not (a namespace holding large
// unrelated Secrets: Helm releases, certificates, bundles), reading stops at
// the budget and the same page, by the same continue token, is listed again
// as metadata only; the caller then reads the Secrets it wants one by one.
// A metadata page over the budget (annotations can be 256 KiB per object) is
// asked for again with half as many objects, down to one. The budget holds
// for the decoded page too, by an estimate of its size in memory (a map
// entry costs far more decoded than on the wire). So memory is
// bounded by bytes, never by what a namespace holds, and ordinary
// namespaces keep the cost of a plain LIST.
package secretpage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
)

// MinBudget is the smallest byte budget an operator should give: more than
// any one Secret can weigh on the wire (etcd refuses objects over 1.5 MiB),
// so a page of one object always fits. (A smaller one is taken, for tests.)
const MinBudget = 4 << 20

// DefaultBudget is the budget when none is given.
const DefaultBudget = 8 << 20

// Item is one listed Secret.
type Item struct {
	// Meta is the Secret's metadata, always present.
	Meta metav1.PartialObjectMetadata
	// Secret is the whole Secret, as listed, when the page fit the budget;
	// nil when only metadata was listed: read it by name.
	Secret *corev1.Secret
}

// Page is one page of a namespace's Secrets.
type Page struct {
	Items []Item
	// Continue is the token of the next page ("" after the last).
	Continue string
	// Whole reports whether the Secrets came with their data.
	Whole bool
}

// Request names a page.
type Request struct {
	Namespace string
	Selector  labels.Selector
	// Limit is the most Secrets in the page.
	Limit int64
	// Continue is the token of a previous page ("" for the first).
	Continue string
	// MetadataOnly skips the whole listing (counting needs no data).
	MetadataOnly bool
}

// Lister lists pages of Secrets.
type Lister interface {
	Page(ctx context.Context, req Request) (*Page, error)
}

// ErrOverBudget is returned when even one object's metadata exceeds the
// budget: it cannot happen with a budget of at least MinBudget.
var ErrOverBudget = errors.New("one Secret's metadata exceeds the list byte budget")

// ReadError is a list response that could not be read or decoded whole
// (a connection cut mid-body, a stream reset, an answer of another kind):
// worth asking again, never a page.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// APILister lists Secrets from the apiserver through a byte budget.
type APILister struct {
	rc     rest.Interface
	dec    runtime.Decoder
	budget int64
	pool   sync.Pool // *[]byte, response buffers
}

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(metav1.AddMetaToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
}

const (
	acceptWhole = "application/vnd.kubernetes.protobuf,application/json"
	acceptMeta  = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," +
		"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
)

// NewAPILister builds a Lister on cfg and hc (the manager's); budget is the
// most bytes of one response held (0: DefaultBudget).
func NewAPILister(cfg *rest.Config, hc *http.Client, budget int64) (*APILister, error) {
	switch {
	case budget == 0:
		budget = DefaultBudget
	case budget < 0:
		return nil, fmt.Errorf("list byte budget %d is negative", budget)
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = codecs.WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(c, hc)
	if err != nil {
		return nil, err
	}
	return &APILister{rc: rc, dec: codecs.UniversalDeserializer(), budget: budget}, nil
}

// Page lists one page: whole when it fits the budget, metadata otherwise.
func (l *APILister) Page(ctx context.Context, req Request) (*Page, error) {
	if !req.MetadataOnly {
		body, err := l.read(ctx, req, req.Limit, acceptWhole)
		if err != nil {
			return nil, err
		}
		if body != nil {
			page, err := l.whole(body)
			l.putBuffer(body)
			if err != nil || l.fits(page) {
				return page, err
			}
			// Small on the wire, large decoded (many tiny keys): listed
			// again as metadata, as a page over the budget is.
		}
	}
	for limit := req.Limit; ; limit = (limit + 1) / 2 {
		body, err := l.read(ctx, req, limit, acceptMeta)
		if err != nil {
			return nil, err
		}
		if body != nil {
			page, err := l.metadata(body)
			l.putBuffer(body)
			// One object is taken whatever its estimate: the apiserver
			// bounds its size, and refusing it would stop the run.
			if err != nil || l.fits(page) || limit <= 1 {
				return page, err
			}
		}
		if limit <= 1 {
			return nil, ErrOverBudget
		}
	}
}

// read asks for a page and reads its response through the budget into a
// pooled buffer (return it with putBuffer): nil, nil when the response is
// larger (reading stops there and the stream is closed, so the rest is
// never held).
func (l *APILister) read(ctx context.Context, req Request, limit int64, accept string) ([]byte, error) {
	r := l.rc.Get().Namespace(req.Namespace).Resource("secrets").
		Param("limit", strconv.FormatInt(limit, 10)).
		SetHeader("Accept", accept)
	if req.Continue != "" {
		r = r.Param("continue", req.Continue)
	}
	if req.Selector != nil && !req.Selector.Empty() {
		r = r.Param("labelSelector", req.Selector.String())
	}
	rc, err := r.Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	buf := l.getBuffer()
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > l.budget {
				l.putBuffer(buf)
				return nil, nil // over the budget: stop reading here
			}
			// Grow by doubling, never past budget+1 bytes: the buffer is
			// bounded by the budget, not by the response.
			grown := make([]byte, len(buf), min(max(2*cap(buf), 64<<10), int(l.budget)+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := rc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			l.putBuffer(buf)
			return nil, &ReadError{Err: fmt.Errorf("reading the Secret list: %w", err)}
		}
	}
}

// fits reports whether a decoded page's estimated size in memory is within
// the budget. The budget is first applied to the bytes on the wire, but a
// map entry costs far more decoded than encoded: a page of Secrets with
// thousands of empty keys each is a few MiB on the wire and tens in memory.
func (l *APILister) fits(p *Page) bool {
	var n int64
	for i := range p.Items {
		n += metaSize(&p.Items[i].Meta.ObjectMeta)
		if s := p.Items[i].Secret; s != nil {
			n += int64(len(s.Type))
			for k, v := range s.Data {
				n += mapEntryCost + int64(len(k)+len(v))
			}
			for k, v := range s.StringData {
				n += mapEntryCost + int64(len(k)+len(v))
			}
		}
	}
	return n <= l.budget
}

// mapEntryCost and objectCost are rough sizes of a decoded map entry and
// of an object's fixed parts beside its strings (headers, pointers, times).
const (
	mapEntryCost = 64
	objectCost   = 512
)

func metaSize(m *metav1.ObjectMeta) int64 {
	n := int64(objectCost + len(m.Name) + len(m.Namespace) + len(m.UID) + len(m.ResourceVersion) + len(m.GenerateName))
	for k, v := range m.Labels {
		n += mapEntryCost + int64(len(k)+len(v))
	}
	for k, v := range m.Annotations {
		n += mapEntryCost + int64(len(k)+len(v))
	}
	for _, f := range m.ManagedFields {
		n += objectCost + int64(len(f.Manager)+len(f.Operation)+len(f.APIVersion)+len(f.Subresource))
		if f.FieldsV1 != nil {
			n += int64(len(f.FieldsV1.GetRawBytes()))
		}
	}
	for _, o := range m.OwnerReferences {
		n += objectCost + int64(len(o.APIVersion)+len(o.Kind)+len(o.Name)+len(o.UID))
	}
	for _, f := range m.Finalizers {
		n += mapEntryCost + int64(len(f))
	}
	return n
}

// getBuffer returns an empty buffer from the pool (kept between pages, so a
// namespace's pages reuse one buffer instead of growing a new one each).
func (l *APILister) getBuffer() []byte {
	if b, ok := l.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

// putBuffer returns a buffer to the pool once nothing refers to it (the
// decoders copy what they keep).
func (l *APILister) putBuffer(b []byte) {
	l.pool.Put(&b)
}

// decode decodes a list response into list. A response of another kind
// leaves list untouched (the decoder returns a new object instead), which
// would read as an empty, final page: every apiserver list carries a
// resourceVersion, so a list without one is refused.
func (l *APILister) decode(body []byte, list runtime.Object, rv func() string) error {
	if _, _, err := l.dec.Decode(body, nil, list); err != nil {
		return &ReadError{Err: fmt.Errorf("decoding the list: %w", err)}
	}
	if rv() == "" {
		return &ReadError{Err: errors.New("the answer is not the list asked for, or has no resourceVersion")}
	}
	return nil
}

func (l *APILister) whole(body []byte) (*Page, error) {
	list := &corev1.SecretList{}
	if err := l.decode(body, list, list.GetResourceVersion); err != nil {
		return nil, err
	}
	p := &Page{Continue: list.Continue, Whole: true, Items: make([]Item, len(list.Items))}
	for i := range list.Items {
		s := &list.Items[i]
		s.TypeMeta = metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"}
		p.Items[i] = Item{Meta: metav1.PartialObjectMetadata{TypeMeta: s.TypeMeta, ObjectMeta: s.ObjectMeta}, Secret: s}
	}
	return p, nil
}

func (l *APILister) metadata(body []byte) (*Page, error) {
	list := &metav1.PartialObjectMetadataList{}
	if err := l.decode(body, list, list.GetResourceVersion); err != nil {
		return nil, err
	}
	p := &Page{Continue: list.Continue, Items: make([]Item, len(list.Items))}
	for i := range list.Items {
		p.Items[i] = Item{Meta: list.Items[i]}
	}
	return p, nil
}
