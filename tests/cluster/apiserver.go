package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// serviceCIDR is kind's: a /16 holds 65k Services, so no test runs out of ClusterIPs. Its first
// address, 10.96.0.1, is the "kubernetes" Service's and is in the serving certificate.
const serviceCIDR = "10.96.0.0/16"

// apiServerArgs are the kube-apiserver flags of a node-less test control plane. They are
// parsed by kube-apiserver's own flag set, so they mean exactly what the flags of the real
// binary mean, and extra flags given after "--" on our command line are appended last.
func apiServerArgs(o clusterOptions, c *credentials, ports portSet) []string {
	args := []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports.APIServer),
		// Advertised (not listened on) address; with the endpoint reconciler off nothing
		// publishes it as an Endpoints object, which would reject a loopback address.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(ports.EtcdClient),
		"--cert-dir=" + c.pkiDir,
		"--tls-cert-file=" + c.servingCertFile,
		"--tls-private-key-file=" + c.servingKeyFile,
		"--token-auth-file=" + c.tokenFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.saPubFile,
		"--service-account-signing-key-file=" + c.saKeyFile,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=" + strconv.Itoa(o.verbosity),
	}
	if o.runsWorkloads() {
		// TaintNodesByCondition puts a not-ready NoSchedule taint on every new Node, which only
		// the node-lifecycle controller removes. KWOK's Nodes are Ready from their first second
		// and never stop heart-beating, so that controller (and its eviction machinery) would
		// add nothing but a 5 s monitor loop; without the plugin the taint is never set.
		args = append(args, "--disable-admission-plugins=TaintNodesByCondition")
	}
	if !o.controllers {
		// Without the service-account controller no namespace gets its "default"
		// ServiceAccount, and this plugin would then reject every Pod.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	return append(args, o.extraAPIServerArg...)
}

// configureAPIServer does what kube-apiserver's cobra command does before it runs the server,
// minus its process-wide signal handler (our own context decides when to stop) and with the
// listener we reserved. It sets process-wide state (feature gates, klog's logger and contextual
// logging, client-go's default warning handler), so it runs before any other goroutine that
// reads that state starts (a RACE=1 build reported klog's settings written here while the
// bootstrap client read them; see README.md, "Schemes and data races"). The listener is closed
// on error.
func configureAPIServer(ctx context.Context, o clusterOptions, c *credentials, ports portSet, listener net.Listener) (options.CompletedOptions, error) {
	completed, err := completeAPIServerOptions(ctx, o, c, ports, listener)
	if err != nil {
		listener.Close()
	}
	return completed, err
}

func completeAPIServerOptions(ctx context.Context, o clusterOptions, c *credentials, ports portSet, listener net.Listener) (options.CompletedOptions, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(apiServerArgs(o, c, ports)); err != nil {
		return options.CompletedOptions{}, fmt.Errorf("flags: %w", err)
	}
	s.SecureServing.Listener = listener
	s.SecureServing.BindPort = ports.APIServer

	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return options.CompletedOptions{}, err
	}
	// The apiserver's loopback clients would otherwise log every deprecation warning they
	// cause themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return options.CompletedOptions{}, err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return options.CompletedOptions{}, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return options.CompletedOptions{}, utilerrors.NewAggregate(errs)
	}
	if mfg, ok := featureGate.(featuregate.MutableFeatureGate); ok {
		mfg.AddMetrics()
	}
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()
	return completed, nil
}
