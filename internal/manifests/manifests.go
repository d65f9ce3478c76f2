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

// Package manifests re-encrypts the ciphertext blobs of annotated Secret
// manifests in YAML files — where Git holds the truth — and checks which
// blobs are still under a source key.
//
// A file is changed only where a blob is: each blob's scalar is replaced
// in the file's bytes, in the quoting style it had, and nothing else is
// rewritten, so comments, key order, indentation and every other document
// stay byte for byte (git diff shows the blobs and nothing else). The
// result is parsed again and compared with what was meant before it is
// returned. The rules are a KeyRotation's: the same annotations
// (rekey.dev/encrypted-keys, rekey.dev/encryption-context), the same
// contexts and placeholders, and the same checks of the key service's
// answer (the returned SourceKeyId must be a declared source key, the
// KeyId the destination), and a Secret whose blobs do not all re-encrypt
// is left as it was.
package manifests

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
)

// KeyService is what re-encrypting needs of a key service: the embedded
// engine's provider and the AWS provider both have it.
type KeyService interface {
	// DescribeKey resolves a key named in any form to its ARN.
	DescribeKey(ctx context.Context, keyID string) (arn, currentMaterial string, err error)
	ReEncrypt(ctx context.Context, in *kms.ReEncryptInput) (*kms.ReEncryptOutput, error)
}

// Inspector reads which key and version a blob is under without a call
// (rekey's own blob format). Without one, every blob goes to ReEncrypt and
// the answer's SourceKeyId says where it was.
type Inspector interface {
	InspectBlob(blob []byte) (kms.BlobKey, error)
}

// Outcome is what became of one blob.
type Outcome string

const (
	// Rotated: re-encrypted under the destination key (or, in a check,
	// would be: it is under a source key).
	Rotated Outcome = "Rotated"
	// UnderSource: a check found it under a source key.
	UnderSource Outcome = "UnderSourceKey"
	// Current: already under the destination key's current version.
	Current Outcome = "Current"
	// Unknown: a check could not tell (an opaque blob under the
	// destination key, when the destination is also a source).
	Unknown Outcome = "Unknown"
	// Failed: not re-encrypted; Reason says why. The Secret is unchanged.
	Failed Outcome = "Failed"
	// NotAnnotated: a Secret manifest with data but no
	// rekey.dev/encrypted-keys, so nothing in it is read or changed (one
	// finding per Secret; Field and Key are empty). Harmless for a Secret
	// rekey has nothing to do with; for a kustomize patch of an annotated
	// Secret (same name, in another file), its values are blobs no one
	// re-encrypts: see Unannotated.
	NotAnnotated Outcome = "NotAnnotated"
	// GeneratorNotRead: a kustomize secretGenerator entry (in a
	// Kustomization or Component) with inputs. Its literals, files and
	// env files are never read or re-encrypted (one finding per entry;
	// Field and Key are empty; Reason is ReasonAnnotatedGenerator when the
	// entry, or the file's generatorOptions, carries
	// rekey.dev/encrypted-keys). Harmless for a generator rekey has nothing
	// to do with; see UnreadGenerators for those that hold blobs.
	GeneratorNotRead Outcome = "SecretGeneratorNotRead"
)

// ReasonAnnotatedGenerator marks a GeneratorNotRead finding whose Secret
// would carry rekey.dev/encrypted-keys.
const ReasonAnnotatedGenerator = "AnnotatedGenerator"

// Finding is one blob's outcome.
type Finding struct {
	Path      string
	Line      int
	Namespace string
	Secret    string
	Field     string // data or stringData
	Key       string
	Outcome   Outcome
	Reason    string
	Message   string
}

// String is the finding as one line. The names in it come from the files
// (a path, a Secret's name, a key): one that holds a control character or
// anything else not printable is quoted, so that it cannot start a line of
// its own in a CI log.
func (f Finding) String() string {
	path, name, key := printable(f.Path), printable(secretName(f.Namespace, f.Secret)), printable(f.Key)
	s := fmt.Sprintf("%s:%d: Secret %s, %s.%s: %s", path, f.Line, name, f.Field, key, f.Outcome)
	if f.Field == "" {
		s = fmt.Sprintf("%s:%d: Secret %s: %s", path, f.Line, name, f.Outcome)
	}
	if f.Reason != "" {
		s += " (" + f.Reason + ")"
	}
	if f.Message != "" {
		s += ": " + f.Message
	}
	return s
}

// printable is s, or s quoted when any of it is not printable.
func printable(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func secretName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// Rotation says which keys blobs move between, as a KeyRotation's spec
// does. Call Resolve before Reencrypt or Check.
type Rotation struct {
	Keys      KeyService
	Inspector Inspector // optional

	SourceKeyIDs                 []string
	DestinationKeyID             string
	SourceEncryptionContext      map[string]string
	DestinationEncryptionContext map[string]string
	GrantTokens                  []string

	sources map[string]bool // key ARNs
	dest    string          // key ARN
}

// Resolve pins the source and destination keys to their ARNs.
func (r *Rotation) Resolve(ctx context.Context) error {
	if len(r.SourceKeyIDs) == 0 || r.DestinationKeyID == "" {
		return errors.New("a source key and a destination key are needed")
	}
	r.sources = map[string]bool{}
	for _, id := range r.SourceKeyIDs {
		arn, _, err := r.Keys.DescribeKey(ctx, id)
		if err != nil {
			return fmt.Errorf("source key %s: %w", id, err)
		}
		r.sources[arn] = true
	}
	arn, _, err := r.Keys.DescribeKey(ctx, r.DestinationKeyID)
	if err != nil {
		return fmt.Errorf("destination key %s: %w", r.DestinationKeyID, err)
	}
	r.dest = arn
	return nil
}

// ErrLayout is a blob written in a way this package does not rewrite in
// place (a block scalar, a value over several lines): nothing is written.
var ErrLayout = errors.New("unsupported layout")

// Reencrypt re-encrypts the blobs of every annotated Secret in src (the
// contents of the file at path, a stream of YAML documents) and returns
// the new contents — src itself when nothing changed — and one Finding
// per blob. Failed blobs leave their Secret unchanged; an error means
// nothing may be written.
func (r *Rotation) Reencrypt(ctx context.Context, path string, src []byte) ([]byte, []Finding, error) {
	return r.run(ctx, path, src, false)
}

// Check reports every blob's outcome without changing anything: which are
// still under a source key (UnderSource).
func (r *Rotation) Check(ctx context.Context, path string, src []byte) ([]Finding, error) {
	_, fs, err := r.run(ctx, path, src, true)
	return fs, err
}

// blob is one annotated value of a Secret document.
type blob struct {
	finding Finding
	node    *yaml.Node
	// span is where the value is written in the file (found before any
	// key service call; unset in a check, which writes nothing).
	span edit
	raw  []byte
	src  map[string]string
	dst  map[string]string
}

// edit replaces src[off:off+n] with text: quote, the value, quote.
type edit struct {
	off, n int
	quote  string
	text   string
}

// with is the edit that writes value in the scalar's own quoting.
func (e edit) with(value string) edit {
	e.text = e.quote + value + e.quote
	return e
}

func (r *Rotation) run(ctx context.Context, path string, src []byte, check bool) ([]byte, []Finding, error) {
	if r.sources == nil {
		return nil, nil, errors.New("manifests: Resolve was not called")
	}
	docs, err := decodeAll(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	lines := lineStarts(src)
	var findings []Finding
	var edits []edit
	for _, doc := range docs {
		findings = append(findings, secretGenerators(path, doc)...)
		blobs, fs, err := r.secretBlobs(path, doc, src, lines, check)
		findings = append(findings, fs...)
		if err != nil {
			return nil, nil, err
		}
		if len(blobs) == 0 {
			continue
		}
		var secretEdits []edit
		failed := false
		for i := range blobs {
			b := &blobs[i]
			text, err := r.one(ctx, b, check)
			if err != nil {
				return nil, nil, err
			}
			if b.finding.Outcome == Failed {
				failed = true
			}
			if text != "" {
				secretEdits = append(secretEdits, b.span.with(text))
			}
		}
		for i := range blobs {
			b := &blobs[i]
			if failed && b.finding.Outcome == Rotated && !check {
				// A Secret changes whole or not at all.
				b.finding.Outcome, b.finding.Reason = Failed, "OtherBlobFailed"
				b.finding.Message = "not written: another blob of this Secret failed"
			}
			findings = append(findings, b.finding)
		}
		if !failed {
			edits = append(edits, secretEdits...)
		}
	}
	if check || len(edits) == 0 {
		return src, findings, nil
	}
	out := apply(src, edits)
	if err := sameButBlobs(src, out, edits); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, findings, nil
}

// decodeAll parses a stream of YAML documents.
func decodeAll(src []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &n)
	}
}

// field returns the value node of key in a mapping node.
func field(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// hasValues reports whether n is a mapping with at least one entry.
func hasValues(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.MappingNode && len(n.Content) > 0
}

// Unannotated returns the NotAnnotated findings that name a Secret an
// annotated one also names (the same name, and the same namespace where
// both give one) — in a kustomize tree, a patch whose values replace the
// annotated Secret's and are never re-encrypted or checked. Pass every
// finding of a run, across its files.
func Unannotated(findings []Finding) []Finding {
	var out []Finding
	for _, f := range findings {
		if f.Outcome == NotAnnotated && namesAnAnnotatedSecret(findings, f, func(name string) bool { return name == f.Secret }) {
			out = append(out, f)
		}
	}
	return out
}

// UnreadGenerators returns the GeneratorNotRead findings of secretGenerator
// entries that hold blobs rekey does not read: those carrying
// rekey.dev/encrypted-keys, and those with behavior merge or replace
// whose name holds an annotated Secret's name (as it is, or with a
// kustomize namePrefix or nameSuffix; the namespace rule of Unannotated),
// whose values a kustomize build puts into it. A generator with the
// default behavior, create, cannot change an existing Secret. Pass every
// finding of a run, across its files.
func UnreadGenerators(findings []Finding) []Finding {
	var out []Finding
	for _, f := range findings {
		if f.Outcome != GeneratorNotRead {
			continue
		}
		if f.Reason == ReasonAnnotatedGenerator ||
			f.Reason == reasonMergingGenerator && namesAnAnnotatedSecret(findings, f, func(name string) bool { return strings.Contains(f.Secret, name) }) {
			out = append(out, f)
		}
	}
	return out
}

// namesAnAnnotatedSecret reports whether an annotated Secret manifest among
// findings has a name that matches and a namespace compatible with f's
// (the same, or either not given).
func namesAnAnnotatedSecret(findings []Finding, f Finding, matches func(name string) bool) bool {
	return slices.ContainsFunc(findings, func(a Finding) bool {
		return a.Outcome != NotAnnotated && a.Outcome != GeneratorNotRead && a.Secret != "" && matches(a.Secret) &&
			(a.Namespace == "" || f.Namespace == "" || a.Namespace == f.Namespace)
	})
}

// reasonMergingGenerator marks a GeneratorNotRead finding of an entry with
// behavior merge or replace (and no rekey.dev/encrypted-keys).
const reasonMergingGenerator = "MergingGenerator"

// secretGenerators returns a GeneratorNotRead finding for each
// secretGenerator entry with inputs (literals, files or env files) when doc
// is a kustomize Kustomization or Component (its kind, or no kind and a
// secretGenerator list: kustomization files often name neither), and for a
// SecretGenerator generator configuration (kind SecretGenerator, used
// through a kustomization's generators). Field names are matched as
// kustomize matches them (any case), through YAML aliases and merge keys.
func secretGenerators(path string, doc *yaml.Node) []Finding {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := resolve(doc.Content[0])
	entry := func(g *yaml.Node, name, namespace string, all bool) []Finding {
		if !slices.ContainsFunc([]string{"literals", "files", "envs", "env"}, func(k string) bool {
			n := kfield(g, k)
			return n != nil && (n.Kind == yaml.SequenceNode && len(n.Content) > 0 || n.Kind == yaml.ScalarNode && n.Tag != "!!null" && n.Value != "")
		}) {
			return nil
		}
		f := Finding{Path: path, Line: g.Line, Namespace: namespace, Secret: name, Outcome: GeneratorNotRead}
		switch behavior := strings.ToLower(kscalar(g, "behavior")); {
		case all || carriesEncryptedKeys(kfield(g, "options")):
			f.Reason = ReasonAnnotatedGenerator
		case behavior == "merge" || behavior == "replace":
			f.Reason = reasonMergingGenerator
		}
		return []Finding{f}
	}
	switch kscalar(root, "kind") {
	case "SecretGenerator":
		// kustomize's own rule: name and namespace at the top, else the
		// configuration's metadata.
		meta := kfield(root, "metadata")
		return entry(root, cmpOr(kscalar(root, "name"), kscalar(meta, "name")), cmpOr(kscalar(root, "namespace"), kscalar(meta, "namespace")),
			carriesEncryptedKeys(meta))
	case "Kustomization", "Component", "":
	default:
		return nil
	}
	gens := kfield(root, "secretGenerator")
	if gens == nil || gens.Kind != yaml.SequenceNode {
		return nil
	}
	all := carriesEncryptedKeys(kfield(root, "generatorOptions"))
	var out []Finding
	for _, g := range gens.Content {
		if g = resolve(g); g.Kind == yaml.MappingNode {
			out = append(out, entry(g, kscalar(g, "name"), cmpOr(kscalar(g, "namespace"), kscalar(root, "namespace")), all)...)
		}
	}
	return out
}

// carriesEncryptedKeys reports whether m (generator options, or metadata)
// has annotations naming rekey.dev/encrypted-keys.
func carriesEncryptedKeys(m *yaml.Node) bool {
	return lookup(kfield(m, "annotations"), rekeyv1alpha1.EncryptedKeysAnnotation, false, 0) != nil
}

// kfield is m's field key as kustomize reads it: the name in any case,
// aliases followed, merge keys (<<) searched.
func kfield(m *yaml.Node, key string) *yaml.Node { return lookup(m, key, true, 0) }

func kscalar(m *yaml.Node, key string) string {
	if n := kfield(m, key); n != nil && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return n.Value
	}
	return ""
}

// lookup finds key in the mapping m (exactly, or in any case with fold),
// following aliases and searching merge keys; depth bounds merges of
// merges.
func lookup(m *yaml.Node, key string, fold bool, depth int) *yaml.Node {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode || depth > 8 {
		return nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.Value == key || fold && strings.EqualFold(k.Value, key) {
			return resolve(m.Content[i+1])
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merges = append(merges, m.Content[i+1])
		}
	}
	for _, v := range merges {
		v = resolve(v)
		srcs := []*yaml.Node{v}
		if v != nil && v.Kind == yaml.SequenceNode {
			srcs = v.Content
		}
		for _, src := range srcs {
			if n := lookup(src, key, fold, depth+1); n != nil {
				return n
			}
		}
	}
	return nil
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func scalar(m *yaml.Node, key string) string {
	if n := field(m, key); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// secretBlobs finds the annotated blobs of one document, when it is a
// Secret manifest carrying rekey.dev/encrypted-keys. Unless check, a blob
// that cannot be replaced in place is an error.
func (r *Rotation) secretBlobs(path string, doc *yaml.Node, file []byte, lines []int, check bool) ([]blob, []Finding, error) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil, nil
	}
	root := doc.Content[0]
	if scalar(root, "kind") != "Secret" || scalar(root, "apiVersion") != "v1" {
		return nil, nil, nil
	}
	meta := field(root, "metadata")
	ann := field(meta, "annotations")
	keysAnn := field(ann, rekeyv1alpha1.EncryptedKeysAnnotation)
	ns, name := scalar(meta, "namespace"), scalar(meta, "name")
	if keysAnn == nil {
		if hasValues(field(root, "data")) || hasValues(field(root, "stringData")) {
			return nil, []Finding{{Path: path, Line: root.Line, Namespace: ns, Secret: name, Outcome: NotAnnotated}}, nil
		}
		return nil, nil, nil
	}
	values := map[string]*yaml.Node{}
	fieldOf := map[string]string{}
	present := map[string][]byte{}
	for _, f := range []string{"data", "stringData"} {
		m := field(root, f)
		if m == nil || m.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k := m.Content[i].Value
			values[k], fieldOf[k], present[k] = m.Content[i+1], f, nil
		}
	}
	base := Finding{Path: path, Line: keysAnn.Line, Namespace: ns, Secret: name}
	fail := func(key, reason, msg string) Finding {
		f := base
		f.Key, f.Field, f.Outcome, f.Reason, f.Message = key, cmpOr(fieldOf[key], "data"), Failed, reason, msg
		return f
	}
	var src, dst map[string]string
	if len(r.SourceEncryptionContext) > 0 {
		src = r.SourceEncryptionContext
	} else if c := field(ann, rekeyv1alpha1.EncryptionContextAnnotation); c != nil {
		ec, err := rekeyv1alpha1.ParseEncryptionContext(c.Value)
		if err != nil {
			return nil, []Finding{fail("", "InvalidEncryptionContext", err.Error())}, nil
		}
		src = ec
	}
	dst = r.DestinationEncryptionContext
	if len(dst) == 0 {
		dst = src
	}
	if ns == "" && (usesPlaceholder(src, rekeyv1alpha1.ContextPlaceholderNamespace) ||
		usesPlaceholder(dst, rekeyv1alpha1.ContextPlaceholderNamespace)) {
		return nil, []Finding{fail("", "NamespaceUnknown",
			"the encryption context uses {namespace} and the manifest names no metadata.namespace")}, nil
	}
	var blobs []blob
	var findings []Finding
	for _, k := range rekeyv1alpha1.EncryptedKeys(keysAnn.Value, present) {
		n, ok := values[k]
		if !ok {
			findings = append(findings, fail(k, "DataKeyMissing", fmt.Sprintf("%s names %q, which the manifest does not have", rekeyv1alpha1.EncryptedKeysAnnotation, k)))
			continue
		}
		f := base
		f.Key, f.Field, f.Line = k, fieldOf[k], n.Line
		if n.Kind != yaml.ScalarNode {
			f.Outcome, f.Reason, f.Message = Failed, "InvalidCiphertextException", "the value is not a string"
			findings = append(findings, f)
			continue
		}
		var span edit
		if !check {
			// Only a value on one line can be replaced in place: say so
			// before any key service call, and write nothing.
			var err error
			if span, err = scalarSpan(file, lines, n); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: Secret %s, %s.%s: %w", path, n.Line, secretName(ns, name), f.Field, k, err)
			}
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(n.Value)
		if err != nil {
			f.Outcome, f.Reason, f.Message = Failed, "InvalidCiphertextException", "the value is not base64 of a ciphertext blob"
			findings = append(findings, f)
			continue
		}
		bsrc := rekeyv1alpha1.ExpandEncryptionContext(src, ns, name, k)
		bdst := rekeyv1alpha1.ExpandEncryptionContext(dst, ns, name, k)
		blobs = append(blobs, blob{finding: f, node: n, span: span, raw: raw, src: bsrc, dst: bdst})
	}
	if len(findings) > 0 {
		// A Secret with a bad value is not written at all.
		for _, b := range blobs {
			f := b.finding
			f.Outcome, f.Reason, f.Message = Failed, "OtherBlobFailed", "not written: another value of this Secret is not usable"
			findings = append(findings, f)
		}
		return nil, findings, nil
	}
	return blobs, nil, nil
}

func usesPlaceholder(ec map[string]string, p string) bool {
	for _, v := range ec {
		if strings.Contains(v, p) {
			return true
		}
	}
	return false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// one decides and, unless check, re-encrypts one blob. It returns the new
// scalar value (base64), or "" when the blob stays as it is.
func (r *Rotation) one(ctx context.Context, b *blob, check bool) (string, error) {
	f := &b.finding
	if r.Inspector != nil {
		bk, err := r.Inspector.InspectBlob(b.raw)
		if err != nil {
			var ke *kms.Error
			if errors.As(err, &ke) {
				f.Outcome, f.Reason, f.Message = Failed, string(ke.Code), ke.Message
				return "", nil
			}
			return "", err
		}
		switch {
		case bk.KeyARN == r.dest && bk.Current:
			f.Outcome = Current
			return "", nil
		case !r.sources[bk.KeyARN]:
			f.Outcome, f.Reason = Failed, "SourceKeyNotDeclared"
			f.Message = "the blob is under " + bk.KeyARN + ", which is not a source key; not sent to the key service"
			return "", nil
		case check:
			f.Outcome = UnderSource
			return "", nil
		}
	}
	out, err := r.Keys.ReEncrypt(ctx, &kms.ReEncryptInput{
		CiphertextBlob:               b.raw,
		SourceKeyID:                  r.singleSource(),
		SourceEncryptionContext:      b.src,
		DestinationKeyID:             r.dest,
		DestinationEncryptionContext: b.dst,
		GrantTokens:                  r.GrantTokens,
	})
	var ke *kms.Error
	if errors.As(err, &ke) && ke.Code == kms.CodeIncorrectKey && r.Inspector == nil && !r.sources[r.dest] {
		// An opaque blob not under the one declared source key: it may
		// have moved already. Asked again without SourceKeyId, the key
		// service says which key it is under; the answer is only read.
		again, err2 := r.Keys.ReEncrypt(ctx, &kms.ReEncryptInput{
			CiphertextBlob: b.raw, SourceEncryptionContext: b.src,
			DestinationKeyID: r.dest, DestinationEncryptionContext: b.dst, GrantTokens: r.GrantTokens,
		})
		if err2 == nil && again.SourceKeyID == r.dest {
			f.Outcome = Current
			return "", nil
		}
	}
	if err != nil {
		if errors.As(err, &ke) && blobError(ke.Code) {
			f.Outcome, f.Reason, f.Message = Failed, string(ke.Code), ke.Message
			return "", nil
		}
		return "", fmt.Errorf("re-encrypting %s.%s of Secret %s: %w", f.Field, f.Key, secretName(f.Namespace, f.Secret), err)
	}
	switch {
	case out.KeyID != r.dest:
		f.Outcome, f.Reason, f.Message = Failed, "UnexpectedDestinationKey", "the key service answered with "+out.KeyID+", not the destination key"
		return "", nil
	case out.SourceKeyID == r.dest && !r.sources[r.dest]:
		f.Outcome = Current // opaque, and already under the destination
		return "", nil
	case !r.sources[out.SourceKeyID]:
		f.Outcome, f.Reason, f.Message = Failed, "UnexpectedSourceKey", "the blob was under "+out.SourceKeyID+", which is not a source key"
		return "", nil
	case check && out.SourceKeyID == r.dest:
		f.Outcome = Unknown // opaque: which version it is under is not said
		return "", nil
	case check:
		f.Outcome = UnderSource
		return "", nil
	}
	f.Outcome = Rotated
	return base64.StdEncoding.EncodeToString(out.CiphertextBlob), nil
}

// singleSource is the SourceKeyId sent: with one declared source key, the
// key service itself refuses a blob under another.
func (r *Rotation) singleSource() string {
	if len(r.sources) != 1 {
		return ""
	}
	for arn := range r.sources {
		return arn
	}
	return ""
}

// blobError reports whether a key service error is the blob's own (it
// fails this Secret) rather than the run's (it stops everything).
func blobError(c kms.ErrorCode) bool {
	switch c {
	case kms.CodeInvalidCiphertext, kms.CodeIncorrectKey, kms.CodeValidation, kms.CodeNotFound, kms.CodeInvalidGrantToken:
		return true
	}
	return false
}

// lineStarts returns the byte offset of each line's start.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// scalarSpan finds where a one-line scalar is written in src, and its
// quoting: the edit that replaces it (with sets the new value).
func scalarSpan(src []byte, lines []int, n *yaml.Node) (edit, error) {
	var quote string
	switch n.Style {
	case 0:
	case yaml.DoubleQuotedStyle:
		quote = `"`
	case yaml.SingleQuotedStyle:
		quote = `'`
	default:
		return edit{}, fmt.Errorf("%w: a block scalar (| or >); write the value on one line", ErrLayout)
	}
	if n.Line < 1 || n.Line > len(lines) {
		return edit{}, fmt.Errorf("%w: no line %d", ErrLayout, n.Line)
	}
	off := lines[n.Line-1]
	// Column counts characters from 1.
	for c := 1; c < n.Column; c++ {
		if off >= len(src) || src[off] == '\n' {
			return edit{}, fmt.Errorf("%w: no column %d on line %d", ErrLayout, n.Column, n.Line)
		}
		_, size := utf8.DecodeRune(src[off:])
		off += size
	}
	raw := quote + n.Value + quote
	if !bytes.HasPrefix(src[off:], []byte(raw)) {
		return edit{}, fmt.Errorf("%w: the value is written over several lines or with escapes; write it on one line", ErrLayout)
	}
	return edit{off: off, n: len(raw), quote: quote}, nil
}

// apply makes the edits (which do not overlap) on a copy of src.
func apply(src []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.off - b.off })
	var out bytes.Buffer
	out.Grow(len(src) + 64*len(edits))
	at := 0
	for _, e := range edits {
		out.Write(src[at:e.off])
		out.WriteString(e.text)
		at = e.off + e.n
	}
	out.Write(src[at:])
	return out.Bytes()
}

// sameButBlobs parses the result and requires it to be the original with
// only the edited scalars changed: a splice that touched anything else is
// an error, and nothing is written.
func sameButBlobs(src, out []byte, edits []edit) error {
	before, err := decodeAll(src)
	if err != nil {
		return err
	}
	after, err := decodeAll(out)
	if err != nil {
		return fmt.Errorf("the rewritten file does not parse (nothing written): %w", err)
	}
	if len(before) != len(after) {
		return fmt.Errorf("the rewritten file has %d documents, not %d (nothing written)", len(after), len(before))
	}
	changed := 0
	var walk func(a, b *yaml.Node) error
	walk = func(a, b *yaml.Node) error {
		if a.Kind != b.Kind || a.Tag != b.Tag || a.Style != b.Style || len(a.Content) != len(b.Content) ||
			a.Line != b.Line || a.Column != b.Column || a.HeadComment != b.HeadComment ||
			a.LineComment != b.LineComment || a.FootComment != b.FootComment || a.Anchor != b.Anchor {
			return fmt.Errorf("the rewrite changed line %d beyond its blob (nothing written)", a.Line)
		}
		if a.Value != b.Value {
			changed++
		}
		for i := range a.Content {
			if err := walk(a.Content[i], b.Content[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range before {
		if err := walk(before[i], after[i]); err != nil {
			return err
		}
	}
	if changed != len(edits) {
		return fmt.Errorf("the rewrite changed %d values for %d blobs (nothing written)", changed, len(edits))
	}
	return nil
}
