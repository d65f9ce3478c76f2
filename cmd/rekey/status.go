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
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
)

const statusLong = `Without NAME, lists the KeyRotations of the namespace (the kubeconfig's, or
-n; -A: every namespace): phase, progress, failures, whether the source keys
are drained. With NAME, shows one rotation as a person reads it: the keys,
the run, the counts, the conditions, every recorded failure and the
inventory of keys the selected blobs are under.

Reads the cluster through the kubeconfig (KUBECONFIG, ~/.kube/config);
installed as kubectl-rekey on the PATH, it is also "kubectl rekey status".`

const rerunLong = `Sets rekey.dev/requested-at on a KeyRotation: a finished one starts a new
run; a running one records it, and the run in progress answers it.

Writes to the cluster through the kubeconfig (KUBECONFIG, ~/.kube/config);
installed as kubectl-rekey on the PATH, it is also "kubectl rekey rerun".`

// kubeTarget is where status and rerun look: a client and a namespace.
type kubeTarget struct {
	namespace string
	all       bool
}

func (k *kubeTarget) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&k.namespace, "namespace", "n", "", "the `NAMESPACE` (default: the kubeconfig's, else default)")
}

// client returns a client and settles the namespace.
func (k *kubeTarget) client() (client.Client, error) {
	if k.namespace != "" {
		if errs := validation.IsDNS1123Label(k.namespace); len(errs) > 0 {
			return nil, usageErrorf("namespace %q: %s", k.namespace, strings.Join(errs, "; "))
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	if k.namespace == "" && !k.all {
		ns, err := kubeconfigNamespace()
		if err != nil {
			return nil, err
		}
		k.namespace = ns
	}
	return client.New(cfg, client.Options{Scheme: newScheme()})
}

// kubeconfigNamespace is the namespace of the kubeconfig's current context
// ("default" when it names none), as kubectl takes it.
func kubeconfigNamespace() (string, error) {
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	return ns, nil
}

func newStatusCmd(s streams) *cobra.Command {
	var k kubeTarget
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "show a KeyRotation (or list them): progress, conditions, failures, inventory",
		Long:  statusLong,
		Example: `  rekey status -A
  rekey status billing-2026q4 -n billing`,
		Args:              maxArgs(1),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), &k, args, s.out, s.err)
		},
	}
	k.bind(cmd.Flags())
	cmd.Flags().BoolVarP(&k.all, "all-namespaces", "A", false, "list the KeyRotations of every namespace")
	return cmd
}

func runStatus(ctx context.Context, k *kubeTarget, pos []string, stdout, stderr io.Writer) error {
	switch {
	case len(pos) == 1 && k.all:
		return usageErrorf("NAME and --all-namespaces do not go together")
	case k.all && k.namespace != "":
		return usageErrorf("--namespace and --all-namespaces do not go together")
	}
	if len(pos) == 1 {
		if err := checkName(pos[0]); err != nil {
			return err
		}
	}
	c, err := k.client()
	if err != nil {
		return err
	}
	now := time.Now()
	if len(pos) == 0 {
		var list rekeyv1alpha1.KeyRotationList
		var opts []client.ListOption
		if !k.all {
			opts = append(opts, client.InNamespace(k.namespace))
		}
		if err := c.List(ctx, &list, opts...); err != nil {
			return err
		}
		if len(list.Items) == 0 {
			where := "in namespace " + k.namespace
			if k.all {
				where = "in any namespace"
			}
			fmt.Fprintf(stderr, "no KeyRotations %s\n", where)
			return nil
		}
		return printStatusTable(stdout, list.Items, k.all, now)
	}
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: pos[0]}, kr); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no KeyRotation %s in namespace %s", pos[0], k.namespace)
		}
		return err
	}
	return printStatus(stdout, kr, now)
}

func newRerunCmd(s streams) *cobra.Command {
	var k kubeTarget
	cmd := &cobra.Command{
		Use:               "rerun NAME",
		Short:             "start a new run of a finished KeyRotation (rekey.dev/requested-at)",
		Long:              rerunLong,
		Example:           `  rekey rerun billing-2026q4 -n billing`,
		Args:              exactArgs(1),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRerun(cmd.Context(), &k, args[0], s.out)
		},
	}
	k.bind(cmd.Flags())
	return cmd
}

func runRerun(ctx context.Context, k *kubeTarget, name string, stdout io.Writer) error {
	if err := checkName(name); err != nil {
		return err
	}
	c, err := k.client()
	if err != nil {
		return err
	}
	kr := &rekeyv1alpha1.KeyRotation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: name}, kr); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no KeyRotation %s in namespace %s", name, k.namespace)
		}
		return err
	}
	value := time.Now().UTC().Format(time.RFC3339Nano)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations":     map[string]string{rekeyv1alpha1.RequestedAtAnnotation: value},
		"resourceVersion": kr.ResourceVersion, // fail rather than race another change
	}})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, kr, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	switch kr.Status.Phase {
	case rekeyv1alpha1.PhaseSucceeded, rekeyv1alpha1.PhaseFailed:
		fmt.Fprintf(stdout, "keyrotation %s/%s: %s=%s; a new run starts\n", kr.Namespace, kr.Name, rekeyv1alpha1.RequestedAtAnnotation, value)
	default:
		fmt.Fprintf(stdout, "keyrotation %s/%s: %s=%s; it is %s: the run in progress answers the request, no new run starts\n",
			kr.Namespace, kr.Name, rekeyv1alpha1.RequestedAtAnnotation, value, strings.ToLower(string(cmpPhase(kr.Status.Phase))))
	}
	return nil
}

func checkName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return usageErrorf("%q is not a KeyRotation name: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

func cmpPhase(p rekeyv1alpha1.Phase) rekeyv1alpha1.Phase {
	if p == "" {
		return rekeyv1alpha1.PhasePending
	}
	return p
}

func conditionStatus(kr *rekeyv1alpha1.KeyRotation, typ string) string {
	if c := meta.FindStatusCondition(kr.Status.Conditions, typ); c != nil {
		return string(c.Status)
	}
	return "-"
}

// age is a duration as kubectl prints ages.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t.Time).Round(time.Second)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func printStatusTable(w io.Writer, items []rekeyv1alpha1.KeyRotation, all bool, now time.Time) error {
	slices.SortFunc(items, func(a, b rekeyv1alpha1.KeyRotation) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if all {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tPHASE\tPROGRESS\tFAILED\tDRAINED\tAGE")
	for i := range items {
		kr := &items[i]
		if all {
			fmt.Fprintf(tw, "%s\t", kr.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", kr.Name, cmpPhase(kr.Status.Phase), orDash(kr.Status.Progress),
			kr.Status.Secrets.Failed, conditionStatus(kr, rekeyv1alpha1.ConditionSourceKeysDrained), age(kr.CreationTimestamp, now))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printStatus shows one rotation.
func printStatus(w io.Writer, kr *rekeyv1alpha1.KeyRotation, now time.Time) error {
	st := &kr.Status
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(f, a...)) }
	line("KeyRotation", "%s/%s", kr.Namespace, kr.Name)
	phase := string(cmpPhase(st.Phase))
	if kr.Spec.Paused {
		phase += " (spec.paused)"
	}
	if kr.Spec.DryRun {
		phase += " (dry run: nothing is written)"
	}
	if st.ObservedGeneration < kr.Generation {
		phase += fmt.Sprintf(" (generation %d not yet observed)", kr.Generation)
	}
	line("Phase", "%s", phase)
	line("Progress", "%s Secrets", orDash(st.Progress))
	line("From", "%s", keysWithARNs(kr.Spec.SourceKeyIDs, st.ResolvedSourceKeyARNs))
	line("To", "%s", keysWithARNs([]string{kr.Spec.DestinationKeyID}, nonEmpty(st.ResolvedDestinationKeyARN)))
	provider := "embedded"
	if kr.Spec.Provider != nil && kr.Spec.Provider.AWS != nil {
		provider = "aws (region " + kr.Spec.Provider.AWS.Region + ")"
	}
	line("Provider", "%s", provider)
	if st.Run != nil {
		line("Run", "%s, started %s ago", st.Run.ID, age(st.Run.StartTime, now))
	}
	if st.CompletionTime != nil {
		line("Completed", "%s ago", age(*st.CompletionTime, now))
	}
	s, b := st.Secrets, st.Blobs
	line("Secrets", "%d total: %d rotated, %d would rotate, %d skipped, %d failed", s.Total, s.Rotated, s.WouldRotate, s.Skipped, s.Failed)
	line("Blobs", "%d total: %d rotated, %d would rotate, %d skipped, %d failed", b.Total, b.Rotated, b.WouldRotate, b.Skipped, b.Failed)
	if v := st.Verification; v != nil {
		line("Verified", "%s ago: %d blobs in %d Secrets read; %d blobs in %d Secrets under a source key; %d not verifiable",
			age(v.Time, now), v.Blobs, v.Secrets, v.BlobsUnderSourceKeys, v.SecretsUnderSourceKeys, v.Unverifiable)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nConditions:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, c := range st.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, age(c.LastTransitionTime, now), c.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if d := meta.FindStatusCondition(st.Conditions, rekeyv1alpha1.ConditionSourceKeysDrained); d == nil || d.Status != metav1.ConditionTrue {
		fmt.Fprintln(w, "  The source keys are not known to be drained: do not retire them yet.")
	}

	if len(st.Failures) > 0 {
		fmt.Fprintf(w, "\nFailures (%d recorded of %d failed Secrets):\n", len(st.Failures), s.Failed)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SECRET\tKEY\tREASON\tMESSAGE")
		for _, f := range st.Failures {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.Secret, orDash(f.Key), f.Reason, f.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Inventory) > 0 {
		fmt.Fprintln(w, "\nInventory (the keys the selected blobs were under at the last verification):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  KEY\tMATERIAL\tBLOBS\tROLE")
		for _, e := range st.Inventory {
			role := ""
			switch {
			case e.KeyARN == st.ResolvedDestinationKeyARN:
				role = "destination"
			case slices.Contains(st.ResolvedSourceKeyARNs, e.KeyARN):
				role = "source"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", e.KeyARN, orDash(short(e.KeyMaterialID)), e.Blobs, role)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// keysWithARNs prints the keys as the spec names them, with the ARNs the
// controller pinned.
func keysWithARNs(ids, arns []string) string {
	out := strings.Join(ids, ", ")
	if len(arns) > 0 {
		out += " (" + strings.Join(arns, ", ") + ")"
	}
	return out
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
