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
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	rekeyv1alpha1 "github.com/rekey-dev/rekey/api/v1alpha1"
	"github.com/rekey-dev/rekey/controllers"
	"github.com/rekey-dev/rekey/internal/kms"
	awsprovider "github.com/rekey-dev/rekey/internal/provider/aws"
	"github.com/rekey-dev/rekey/internal/provider/embedded"
	"github.com/rekey-dev/rekey/internal/secretpage"
)

// leaderElectionID names the Lease the replicas elect their leader with
// (the leader election Role in config/rbac is limited to it).
const leaderElectionID = "rekey.dev-controller"

// skipControllerNameValidation lets tests run several managers in one
// process (controller names are checked process-wide).
var skipControllerNameValidation bool

// gracefulShutdown bounds how long the manager waits for reconciles to end
// when stopped.
const gracefulShutdown = 5 * time.Second

// controllerOptions are the manager's flags.
type controllerOptions struct {
	metricsAddr          string
	metricsSecure        bool
	metricsCertDir       string
	probeAddr            string
	pprofAddr            string
	enableLeaderElection bool
	leaderElectionNS     string
	qps                  float64
	burst                int
	keystore             string
	rootKeyFile          string
	region               string
	accountID            string
	pageSize             int64
	listBudget           int64
	maxRotations         int
	awsRequestsPerSecond float64
	awsAllowedEndpoints  string
	skipKeyNamespaces    bool
	zap                  zap.Options
}

func (o *controllerOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true,
		"serve /metrics over HTTPS to callers the apiserver authenticates (TokenReview) and authorises (SubjectAccessReview: get on /metrics); false serves plain HTTP with neither, on a loopback address only")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "",
		"directory with tls.crt and tls.key for /metrics, reloaded when they change (default: a self-signed certificate made at start-up)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints; 0 disables them")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "address of the net/http/pprof endpoints, for profiling; 0 disables them")
	fs.BoolVar(&o.enableLeaderElection, "leader-elect", false, "elect a leader so that only one manager works at a time")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the pod's namespace)")
	fs.Float64Var(&o.qps, "kube-api-qps", 1000, "client-side QPS limit towards the kube-apiserver (the server protects itself with API Priority and Fairness; lower this to leave room for other clients)")
	fs.IntVar(&o.burst, "kube-api-burst", 2000, "client-side burst towards the kube-apiserver")
	fs.StringVar(&o.keystore, "keystore", "k8s://rekey-system/rekey-keystore",
		"the embedded engine's keystore: k8s://NAMESPACE/NAME (a Secret) or a file path")
	fs.StringVar(&o.rootKeyFile, "root-key-file", "", "file with the base64 root key of the keystore (required)")
	fs.StringVar(&o.region, "region", "local", "region used in the embedded engine's key ARNs")
	fs.StringVar(&o.accountID, "account-id", "000000000000", "account id used in the embedded engine's key ARNs")
	fs.Int64Var(&o.pageSize, "page-size", 1000, "Secrets listed and worked on per reconcile")
	fs.Int64Var(&o.listBudget, "list-budget-bytes", secretpage.DefaultBudget,
		"most bytes of one Secret list response held; a larger page is listed again as metadata and its Secrets read one by one (at least 4194304)")
	fs.IntVar(&o.maxRotations, "max-concurrent-rotations", 2, "KeyRotations worked on at the same time")
	fs.BoolVar(&o.skipKeyNamespaces, "skip-key-namespace-check", false,
		"use keys for any namespace's KeyRotations, without requiring their rekey.dev/namespaces tag to name it (not recommended)")
	fs.StringVar(&o.awsAllowedEndpoints, "aws-allowed-endpoints", "",
		"comma-separated endpoint URLs (https://host[:port]) a KeyRotation's spec.provider.aws.endpoint may name; none by default")
	fs.Float64Var(&o.awsRequestsPerSecond, "aws-requests-per-second", 100,
		"client-side limit of AWS KMS calls per second, per KeyRotation (KMS quotas are per account and Region)")
	// controller-runtime's logging flags (--zap-log-level, --zap-devel, ...)
	// are Go flags.
	zapFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zap.BindFlags(zapFlags)
	fs.AddGoFlagSet(zapFlags)
	// Its own help says "Defaults to 'epoch'" and "nano"; the default is
	// rfc3339 (zap.Options.addDefaults), and nanos is what it takes.
	fs.Lookup("zap-time-encoding").Usage = "Zap time encoding (one of 'epoch', 'millis', 'nanos', 'iso8601', 'rfc3339' or 'rfc3339nano'). Defaults to 'rfc3339'."
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(rekeyv1alpha1.AddToScheme(s))
	return s
}

func newControllerCmd(s streams) *cobra.Command {
	var o controllerOptions
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "run the KeyRotation controller manager",
		Long: `Runs the KeyRotation controller manager, with the embedded engine over the
keystore --keystore names. It reads the cluster through the kubeconfig
(KUBECONFIG, ~/.kube/config) or the in-cluster config; the Deployment of
config/manager and of the Helm chart runs it. docs/operations.md,
"Manager flags", says more about each flag.`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), s.err)
		},
	}
	o.bind(cmd.Flags())
	return cmd
}

// run runs the manager until ctx ends; it logs to stderr.
func (o *controllerOptions) run(ctx context.Context, stderr io.Writer) error {
	if o.listBudget < secretpage.MinBudget {
		return usageErrorf("--list-budget-bytes %d is below %d: a page of one Secret must fit", o.listBudget, secretpage.MinBudget)
	}
	if o.pageSize < 1 {
		return usageErrorf("--page-size %d: at least 1", o.pageSize)
	}
	metricsOpts, err := o.metricsServerOptions(ctx)
	if err != nil {
		return err
	}
	o.zap.DestWriter = stderr
	// Always set a logger: controller-runtime's placeholder grows without bound.
	// (Only the first SetLogger in a process takes effect, so start-up logs
	// through its own copy.)
	logger := quietCleanStop(ctx, zap.New(zap.UseFlagOptions(&o.zap)))
	ctrl.SetLogger(logger)
	log := logger.WithName("setup")
	if limit := goMemoryLimit(os.Getenv, rootFS); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("Go memory limit set from the cgroup's memory limit (GOMEMLIMIT unset)", "bytes", limit, "share", memoryLimitShare)
	}

	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restCfg.QPS = float32(o.qps)
	restCfg.Burst = o.burst

	// Open the keystore before the manager: the apiserver may not be
	// reachable yet (a cluster starting, a network policy not applied yet),
	// and exiting would put the pod in CrashLoopBackOff. Wait for it
	// instead, answering the probes meanwhile.
	root, err := readRootKeyFile(o.rootKeyFile, "--root-key-file")
	if err != nil {
		return fmt.Errorf("%w (set --root-key-file)", err)
	}
	// Secrets are never cached, so this client reads them the way the
	// manager's would; the manager does not exist yet. It knows the one kind
	// it uses, so it needs no discovery: client-go's discovery retries
	// dropped connections without looking at the context, which would hold
	// up a shutdown while the apiserver is away.
	secrets := meta.NewDefaultRESTMapper(nil)
	secrets.Add(corev1.SchemeGroupVersion.WithKind("Secret"), meta.RESTScopeNamespace)
	keystoreClient, err := client.New(restCfg, client.Options{Scheme: newScheme(), Mapper: secrets})
	if err != nil {
		return fmt.Errorf("creating the keystore client: %w", err)
	}
	store, err := openStore(o.keystore, root, keystoreClient)
	if err != nil {
		return err
	}
	stopProbes, err := serveStartupProbes(o.probeAddr)
	if err != nil {
		return err
	}
	engine, err := retryUntil(ctx, log, "opening the keystore "+o.keystore, defaultStartupRetry, permanentStartError,
		func(ctx context.Context) (*kms.Engine, error) {
			return kms.New(ctx, kms.Options{Store: store, Region: o.region, AccountID: o.accountID})
		})
	stopProbes()
	switch {
	case err != nil && ctx.Err() != nil:
		log.Info("stopped while waiting for the keystore")
		return nil
	case err != nil:
		return fmt.Errorf("opening the keystore %s: %w", o.keystore, err)
	}

	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 newScheme(),
		Logger:                 logger,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		LeaderElection:         o.enableLeaderElection,
		LeaderElectionID:       leaderElectionID,
		// Give the lease up when stopped (the process exits right after),
		// so the next replica takes over at once instead of waiting for the
		// lease to expire.
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionNamespace:       o.leaderElectionNS,
		// Well inside the pod's 10 s grace period, so that the lease is
		// released before the kubelet kills the process. A page cut short is
		// redone by the next leader (every Secret write is atomic).
		GracefulShutdownTimeout: ptr.To(gracefulShutdown),
		Controller:              config.Controller{SkipNameValidation: &skipControllerNameValidation},
		Client: client.Options{
			// Secret data is never cached: every Secret read goes to the apiserver.
			Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	embeddedKS := embedded.New(engine)
	rec := &controllers.KeyRotationReconciler{
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("rekey"),
		PageSize:            o.pageSize,
		ListBudget:          o.listBudget,
		IgnoreKeyNamespaces: o.skipKeyNamespaces,
		KeyServices: &controllers.KeyServiceFactory{
			Embedded:         embeddedKS,
			NewAWS:           newAWSKeyService(o.awsRequestsPerSecond),
			Reader:           mgr.GetAPIReader(),
			AllowedEndpoints: splitList(o.awsAllowedEndpoints),
		},
	}
	if err := rec.SetupWithManager(mgr, o.maxRotations); err != nil {
		return fmt.Errorf("setting up the KeyRotation controller: %w", err)
	}
	if err := (&controllers.ConditionMetricsReconciler{}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the condition metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("ready check: %w", err)
	}
	log.Info("starting manager", "version", version)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

// newAWSKeyService builds AWS KMS key services for provider.aws rotations.
func newAWSKeyService(rps float64) func(context.Context, controllers.AWSConfig) (controllers.KeyService, error) {
	return func(ctx context.Context, c controllers.AWSConfig) (controllers.KeyService, error) {
		o := awsprovider.Options{Region: c.Region, Endpoint: c.Endpoint, RequestsPerSecond: rps}
		if c.Static {
			o.StaticCredentials = &awsprovider.StaticCredentials{
				AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
		}
		return awsprovider.New(ctx, o)
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
