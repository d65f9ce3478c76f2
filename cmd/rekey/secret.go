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
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/internal/kms"
)

const secretCreateLong = `Writes the Secret NAME (apiVersion v1, kind Secret, type Opaque) to stdout:
each value is encrypted under KEY with the encryption context given, and the
Secret carries rekey.dev/encrypted-keys (the data keys written) and, with
--context, rekey.dev/encryption-context, as a KeyRotation reads them.
'kubectl apply -f -' takes the output; --apply applies it itself through the
kubeconfig (server-side apply, field manager "rekey").

A value is 1 to 4096 bytes (what KMS Encrypt takes); give at least one with
--from-literal DATAKEY=VALUE or --from-file DATAKEY=PATH. Values given with
--from-literal are visible in the process list and shell history: prefer
--from-file, or --from-file DATAKEY=- for stdin. Values are never printed.

` + keyServiceLong

const secretCreateExample = `  rekey secret create billing-db -n billing --key alias/billing --context app=billing \
      --from-file password=password.txt > billing-db.yaml
  printf %s "$PASSWORD" | rekey secret create billing-db -n billing --key alias/billing \
      --from-file password=- --apply`

func newSecretCmd(s streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "write (or apply) a Secret manifest of values encrypted under a key",
	}
	c.AddCommand(newSecretCreateCmd(s))
	return c
}

func newSecretCreateCmd(s streams) *cobra.Command {
	o := &secretCreate{ks: &keyServiceFlags{}, context: map[string]string{}, labels: map[string]string{}}
	var raw []rawArg
	cmd := &cobra.Command{
		Use:     "create NAME --key KEY",
		Short:   "write a Secret manifest whose values are encrypted under KEY, annotated for rekey; or --apply it to the cluster",
		Long:    secretCreateLong,
		Example: secretCreateExample,
		Args: func(_ *cobra.Command, args []string) error {
			// Values first: a value misplaced as an argument is never echoed.
			if err := o.takeRaw(raw); err != nil {
				return err
			}
			if len(args) != 1 {
				return usageErrorf("secret create takes one argument, the Secret's NAME; got %d", len(args))
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.check(cmd.Flags()); err != nil {
				return err
			}
			return o.run(cmd.Context(), s.in, s.out)
		},
	}
	fs := cmd.Flags()
	o.ks.bind(fs, s.err)
	fs.StringVar(&o.key, "key", "", "`KEY` to encrypt under: key id, key ARN, alias name or alias ARN (required)")
	fs.StringVarP(&o.namespace, "namespace", "n", "", "the Secret's `NAMESPACE` (default: none in the manifest; with --apply, the kubeconfig context's, else default)")
	fs.Var(contextFlag(o.context), "context", "encryption context pair (repeatable); written to rekey.dev/encryption-context")
	fs.Var(rawFlag{flagFromLiteral, &raw}, flagFromLiteral, "data key and value (repeatable)")
	fs.Var(rawFlag{flagFromFile, &raw}, flagFromFile, "data key and the file holding its value; PATH - is stdin (repeatable)")
	fs.Var(rawFlag{flagLabel, &raw}, flagLabel, "label on the Secret (repeatable)")
	fs.StringVarP(&o.output, "output", "o", "yaml", "output `FORMAT`: yaml or json")
	fs.BoolVar(&o.apply, "apply", false, "apply the Secret to the cluster through the kubeconfig (server-side apply, field manager rekey) instead of printing it")
	fs.BoolVar(&o.force, "force", false, "with --apply: take over a Secret that exists without rekey's annotations, and fields other field managers own")
	return cmd
}

// maxValue is the most plaintext KMS Encrypt takes, in bytes.
const maxValue = 4096

// fieldManager is rekey's name in the managedFields of what --apply writes.
const fieldManager = "rekey"

// secretCreate is one 'rekey secret create', parsed and checked.
type secretCreate struct {
	name, namespace, key string
	context              map[string]string
	labels               map[string]string
	// items are the data keys in the order given, with a literal value or
	// a file to read ("-": stdin).
	items        []dataItem
	output       string
	apply, force bool
	ks           *keyServiceFlags
}

type dataItem struct {
	key, path string
	literal   []byte
	fromFile  bool
}

// rawFlag collects a repeated flag's arguments as given. It never fails,
// so the flag package never echoes an argument (which may hold a value) in
// an error; the arguments are checked after parsing.
type rawFlag struct {
	name string
	args *[]rawArg
}

type rawArg struct{ flag, arg string }

func (f rawFlag) String() string { return "" }

// GetSlice marks the flag repeatable (cobra.SliceValue); it gives no
// values.
func (f rawFlag) GetSlice() []string { return nil }

// The flags of secret create that rawFlag collects.
const (
	flagFromLiteral = "from-literal"
	flagFromFile    = "from-file"
	flagLabel       = "label"
)

func (f rawFlag) Type() string {
	switch f.name {
	case flagFromLiteral:
		return "DATAKEY=VALUE"
	case flagFromFile:
		return "DATAKEY=PATH"
	}
	return "KEY=VALUE"
}

func (f rawFlag) Set(s string) error {
	*f.args = append(*f.args, rawArg{f.name, s})
	return nil
}

// takeRaw checks the data and label flags. Errors name a data key, never
// a value.
func (o *secretCreate) takeRaw(raw []rawArg) error {
	seen := map[string]bool{}
	stdin := false
	for _, r := range raw {
		k, v, ok := strings.Cut(r.arg, "=")
		if r.flag == flagLabel {
			if !ok {
				return usageErrorf("--label: want KEY=VALUE (an argument has no '=')")
			}
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return usageErrorf("--label key %q: %s", k, strings.Join(errs, "; "))
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return usageErrorf("--label %s: the value is not a label value: %s", k, strings.Join(errs, "; "))
			}
			if _, dup := o.labels[k]; dup {
				return usageErrorf("--label %s given twice", k)
			}
			o.labels[k] = v
			continue
		}
		if !ok {
			what := "VALUE"
			if r.flag == flagFromFile {
				what = "PATH"
			}
			return usageErrorf("--%s: want DATAKEY=%s (an argument has no '=')", r.flag, what)
		}
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return usageErrorf("--%s: data key %q: %s", r.flag, k, strings.Join(errs, "; "))
		}
		if seen[k] {
			return usageErrorf("data key %q given twice", k)
		}
		seen[k] = true
		it := dataItem{key: k, fromFile: r.flag == flagFromFile}
		if it.fromFile {
			if v == "" {
				return usageErrorf("--from-file %s=: no PATH", k)
			}
			if v == "-" {
				if stdin {
					return usageErrorf("--from-file DATAKEY=- (stdin) given more than once")
				}
				stdin = true
			}
			it.path = v
		} else {
			if err := checkValueSize("--from-literal "+k, len(v)); err != nil {
				return asUsage(err)
			}
			it.literal = []byte(v)
		}
		o.items = append(o.items, it)
	}
	if len(o.items) == 0 {
		return usageErrorf("give at least one --from-literal DATAKEY=VALUE or --from-file DATAKEY=PATH")
	}
	return nil
}

// checkValueSize says what KMS Encrypt takes; it names the size, never the value.
func checkValueSize(what string, n int) error {
	switch {
	case n == 0:
		return fmt.Errorf("%s: the value is empty; KMS Encrypt takes 1 to %d bytes of plaintext", what, maxValue)
	case n > maxValue:
		return fmt.Errorf("%s: the value is %d bytes; KMS Encrypt takes at most %d bytes of plaintext", what, n, maxValue)
	}
	return nil
}

// check validates the name, namespace, key, context and output flags.
func (o *secretCreate) check(fs *pflag.FlagSet) error {
	if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
		// Not echoed: the argument may be a value that lost its flag.
		return usageErrorf("the Secret's NAME is not a Secret name: %s", strings.Join(errs, "; "))
	}
	if o.namespace != "" {
		if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
			return usageErrorf("--namespace %q: %s", o.namespace, strings.Join(errs, "; "))
		}
	}
	if o.key == "" {
		return usageErrorf("--key is required")
	}
	for k, v := range o.context {
		if v == "" {
			return usageErrorf("--context %s=: the value is empty", k)
		}
	}
	outputGiven := fs.Changed("output")
	switch {
	case o.output != "yaml" && o.output != "json":
		return usageErrorf("-o %q: want yaml or json", o.output)
	case o.apply && outputGiven:
		return usageErrorf("-o prints the manifest, --apply applies it: give one")
	case o.force && !o.apply:
		return usageErrorf("--force is for --apply")
	}
	return o.ks.check()
}

func (o *secretCreate) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	values, err := o.readValues(stdin)
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	if err != nil {
		return err
	}
	var (
		c   client.Client
		cur *corev1.Secret
	)
	if o.apply {
		// Before any key service call: the cluster, and whether the
		// Secret may be written.
		if c, err = o.kubeClient(); err != nil {
			return err
		}
		if cur, err = o.existing(ctx, c); err != nil {
			return err
		}
	}
	ks, err := o.ks.open(ctx)
	if err != nil {
		return err
	}
	data := make(map[string][]byte, len(values))
	for _, it := range o.items {
		out, err := ks.Encrypt(ctx, &kms.EncryptInput{KeyID: o.key, Plaintext: values[it.key], EncryptionContext: o.context})
		if err != nil {
			return fmt.Errorf("encrypting data key %s under %s: %w", it.key, o.key, err)
		}
		data[it.key] = out.CiphertextBlob
	}
	annotations, err := o.annotations(data)
	if err != nil {
		return err
	}
	if o.apply {
		return o.applySecret(ctx, c, cur, annotations, data, stdout)
	}
	return o.print(annotations, data, stdout)
}

// readValues returns each data key's plaintext: the literal, or the file's
// contents, bounded by what KMS Encrypt takes.
func (o *secretCreate) readValues(stdin io.Reader) (map[string][]byte, error) {
	values := make(map[string][]byte, len(o.items))
	for _, it := range o.items {
		if !it.fromFile {
			values[it.key] = it.literal
			continue
		}
		v, err := readValueFile(it.path, stdin)
		if pe := (*os.PathError)(nil); errors.As(err, &pe) {
			// PATH not shown: it may be the value, given with --from-file
			// where --from-literal was meant.
			return values, fmt.Errorf("--from-file %s=PATH: the file cannot be read: %w", it.key, pe.Err)
		}
		if err != nil {
			return values, fmt.Errorf("--from-file %s=%s: %w", it.key, it.path, err)
		}
		values[it.key] = v
	}
	return values, nil
}

func readValueFile(path string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxValue+1))
	if err != nil {
		clear(b)
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("empty; KMS Encrypt takes 1 to %d bytes of plaintext", maxValue)
	}
	if len(b) > maxValue {
		clear(b)
		return nil, fmt.Errorf("larger than %d bytes, the most plaintext KMS Encrypt takes", maxValue)
	}
	return b, nil
}

// annotations are the ones the controller reads, written by the same code
// it reads them with (api/v1alpha1).
func (o *secretCreate) annotations(data map[string][]byte) (map[string]string, error) {
	ann := map[string]string{rekeyv1alpha1.EncryptedKeysAnnotation: rekeyv1alpha1.FormatEncryptedKeys(slices.Collect(maps.Keys(data)))}
	if len(o.context) > 0 {
		ec, err := rekeyv1alpha1.FormatEncryptionContext(o.context)
		if err != nil {
			return nil, err
		}
		ann[rekeyv1alpha1.EncryptionContextAnnotation] = ec
	}
	return ann, nil
}

// print writes the manifest: every map's keys sorted, so the same input
// gives the same layout (the blobs differ: each encryption is new).
func (o *secretCreate) print(annotations map[string]string, data map[string][]byte, stdout io.Writer) error {
	meta := map[string]any{"name": o.name, "annotations": annotations}
	if o.namespace != "" {
		meta["namespace"] = o.namespace
	}
	if len(o.labels) > 0 {
		meta["labels"] = o.labels
	}
	enc := make(map[string]string, len(data))
	for k, v := range data {
		enc[k] = base64.StdEncoding.EncodeToString(v)
	}
	obj := map[string]any{"apiVersion": "v1", "kind": "Secret", "type": string(corev1.SecretTypeOpaque), "metadata": meta, "data": enc}
	var out []byte
	var err error
	if o.output == "json" {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetIndent("", "  ")
		e.SetEscapeHTML(false)
		err = e.Encode(obj)
		out = b.Bytes()
	} else {
		out, err = yaml.Marshal(obj)
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func (o *secretCreate) kubeClient() (client.Client, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("--apply needs a kubeconfig: %w", err)
	}
	if o.namespace == "" {
		ns, err := kubeconfigNamespace()
		if err != nil {
			return nil, fmt.Errorf("--apply without --namespace: %w", err)
		}
		o.namespace = ns
	}
	return client.New(cfg, client.Options{Scheme: newScheme()})
}

// errNotRekeys refuses to write over a Secret rekey did not make.
var errNotRekeys = errors.New("exists without the " + rekeyv1alpha1.EncryptedKeysAnnotation + " annotation")

// existing returns the Secret as it is now (nil when there is none), and
// refuses one without rekey's annotation unless --force.
func (o *secretCreate) existing(ctx context.Context, c client.Client) (*corev1.Secret, error) {
	cur := &corev1.Secret{}
	err := c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: o.name}, cur)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", o.namespace, o.name, err)
	}
	if _, ok := cur.Annotations[rekeyv1alpha1.EncryptedKeysAnnotation]; !ok && !o.force {
		return nil, fmt.Errorf("the Secret %s/%s %w: not writing over it (--force takes it over; its other data keys stay)", o.namespace, o.name, errNotRekeys)
	}
	return cur, nil
}

// applySecret server-side applies the Secret as field manager rekey. Over
// an existing Secret it carries the resourceVersion read by existing, so a
// Secret changed since that check is a conflict, not overwritten. (A Secret
// created in between the check and the apply is not detected: apply has no
// create-only precondition.)
func (o *secretCreate) applySecret(ctx context.Context, c client.Client, cur *corev1.Secret,
	annotations map[string]string, data map[string][]byte, stdout io.Writer) error {
	ac := corev1ac.Secret(o.name, o.namespace).WithType(corev1.SecretTypeOpaque).WithAnnotations(annotations).WithData(data)
	if len(o.labels) > 0 {
		ac.WithLabels(o.labels)
	}
	verb := "created"
	if cur != nil {
		ac.WithResourceVersion(cur.ResourceVersion)
		verb = "updated"
	}
	opts := []client.ApplyOption{client.FieldOwner(fieldManager)}
	if o.force {
		opts = append(opts, client.ForceOwnership)
	}
	if err := c.Apply(ctx, ac, opts...); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("applying Secret %s/%s: %w (the Secret changed since it was read, or other field managers own these fields: run again, or --force to take them over)",
				o.namespace, o.name, err)
		}
		return fmt.Errorf("applying Secret %s/%s: %w", o.namespace, o.name, err)
	}
	_, err := fmt.Fprintf(stdout, "secret/%s %s in namespace %s (%s: %s)\n", o.name, verb, o.namespace,
		rekeyv1alpha1.EncryptedKeysAnnotation, annotations[rekeyv1alpha1.EncryptedKeysAnnotation])
	return err
}
