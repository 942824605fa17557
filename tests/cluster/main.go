// Command gitops-test-cluster runs a throw-away Kubernetes cluster for tests, in one process
// listening on 127.0.0.1 only: an embedded etcd and a real kube-apiserver; unless
// --controllers=false kube-controller-manager's housekeeping controllers (namespaces, service
// accounts, root CA, garbage collection; controllers.go), and unless also --workloads=false what
// makes workloads run without a container runtime: the workload and storage controllers
// (controllers.go, storage.go), the real kube-scheduler (scheduler.go), a dynamic volume
// provisioner (storage.go) and KWOK playing the kubelet of --nodes fake Nodes (kwok.go,
// stages.yaml). ClusterRole aggregation always runs.
//
// Everything it needs lives in the directory given with --dir, so a second start on the same
// directory finds the same data, certificates and tokens:
//
//	pki/            CA, serving certificate, service-account signing key
//	tokens.csv      static bearer tokens (users "admin" and "restricted")
//	etcd/           etcd data
//	ports.json      ports of the last run, reused when they are still free
//	kubeconfig      contexts "admin" (current) and "restricted"
//	cluster.pid     pid of the running process (removed on exit)
//	ready           server URL, written once /readyz answers, restricted-ns and its RoleBinding
//	                exist, ClusterRole "view" is aggregated and, with workloads, every Node
//	                is Ready and the default StorageClass exists (removed on exit)
//	cluster.lock    flock held while running, so two processes never share one etcd
//
// Exit codes: 0 clean stop, 1 error, 2 usage, 3 a requested port is in use, 4 the directory is
// already served by another process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	provisioner "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

const (
	exitError   = 1
	exitUsage   = 2
	exitPortUse = 3
	exitLocked  = 4
)

// errPortInUse marks failures that the start script reports as "port taken".
var errPortInUse = errors.New("port in use")

type clusterOptions struct {
	dir               string
	apiserverPort     int
	exitOnStdinClose  bool
	removeDirOnExit   bool
	controllers       bool
	workloads         bool
	nodes             int
	etcdFsync         bool
	verbosity         int
	extraAPIServerArg []string
}

func main() {
	os.Exit(run())
}

func run() int {
	var o clusterOptions
	fs := flag.NewFlagSet("gitops-test-cluster", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "state directory (created if missing); required")
	fs.IntVar(&o.apiserverPort, "port", 0, "fixed apiserver port on 127.0.0.1 (0: reuse the last port if free, else any free port)")
	fs.BoolVar(&o.exitOnStdinClose, "exit-on-stdin-close", false, "stop when standard input reaches EOF, so the cluster dies with the process that started it")
	fs.BoolVar(&o.removeDirOnExit, "remove-dir-on-exit", false, "delete the state directory after stopping (for throw-away clusters owned by one test process)")
	fs.BoolVar(&o.controllers, "controllers", true, "run kube-controller-manager's controllers in-process (and, see --workloads, the scheduler, the volume provisioner and KWOK's fake nodes); false gives a bare API server (ClusterRole aggregation always runs)")
	fs.BoolVar(&o.workloads, "workloads", true, "with --controllers: also run the workload and storage controllers, the scheduler and KWOK; false keeps only the namespace, service-account, root-CA and garbage-collector controllers (for benchmarks, where running Pods would only add load)")
	fs.IntVar(&o.nodes, "nodes", 3, "number of fake Nodes KWOK runs Pods on (0-100; ignored without workloads)")
	fs.BoolVar(&o.etcdFsync, "etcd-fsync", false, "fsync etcd writes; without it a killed process loses nothing (the kernel keeps the writes), only a machine crash could")
	fs.IntVar(&o.verbosity, "v", 0, "kube-apiserver log verbosity")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s --dir DIR [flags] [-- extra kube-apiserver flags]\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	o.extraAPIServerArg = fs.Args()
	if o.nodes < 0 || o.nodes > maxNodes {
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: --nodes %d: want 0 to %d\n", o.nodes, maxNodes)
		return exitUsage
	}
	if o.dir == "" {
		fmt.Fprintln(os.Stderr, "gitops-test-cluster: --dir is required")
		fs.Usage()
		return exitUsage
	}
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: %v\n", err)
		return exitUsage
	}
	o.dir = abs

	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	watchForStop(stop, o.exitOnStdinClose)

	err = serve(ctx, o)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		// Asked to stop while still starting: whatever failed on the way out is expected.
		logf("stopped during start-up: %v", err)
		return 0
	case errors.Is(err, errPortInUse):
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: %v\n", err)
		return exitPortUse
	case errors.Is(err, errLocked):
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: %v\n", err)
		return exitLocked
	default:
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: %v\n", err)
		return exitError
	}
}

// watchForStop cancels ctx on SIGTERM/SIGINT (and on stdin EOF when asked). A second signal,
// or a shutdown that hangs, ends the process at once: a test run must never wait on us.
func watchForStop(stop context.CancelCauseFunc, onStdinClose bool) {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	begin := func(cause error) {
		logf("stopping: %v", cause)
		stop(cause)
		go func() {
			time.Sleep(30 * time.Second)
			fmt.Fprintln(os.Stderr, "gitops-test-cluster: shutdown took more than 30s, exiting")
			os.Exit(exitError)
		}()
	}
	go func() {
		sig := <-signals
		begin(fmt.Errorf("received %v", sig))
		sig = <-signals
		fmt.Fprintf(os.Stderr, "gitops-test-cluster: received %v again, exiting now\n", sig)
		os.Exit(exitError)
	}()
	if onStdinClose {
		go func() {
			// Reading to EOF rather than waiting for a particular byte: whatever a parent writes
			// is irrelevant, only its death (the pipe closing) matters.
			_, _ = io.Copy(io.Discard, os.Stdin)
			begin(errors.New("standard input closed"))
		}()
	}
}

func serve(ctx context.Context, o clusterOptions) error {
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	unlock, err := lockDir(o.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if o.removeDirOnExit {
		// Runs after etcd is closed (defers run last-in first-out) and only once we own the
		// lock, so it can never delete a directory another process is serving.
		defer os.RemoveAll(o.dir)
	}

	readyPath := filepath.Join(o.dir, "ready")
	pidPath := filepath.Join(o.dir, "cluster.pid")
	_ = os.Remove(readyPath)
	if err := writeFileAtomic(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pidPath)
	defer os.Remove(readyPath)

	started := time.Now()
	creds, err := ensureCredentials(o.dir)
	if err != nil {
		return err
	}
	ports, apiListener, err := choosePorts(o.dir, o.apiserverPort)
	if err != nil {
		return err
	}

	// Process-wide state (feature gates, klog's logger, runtime.Scheme registrations) is set
	// here, before the first goroutine that reads it: etcd's own gRPC clients log through klog,
	// the API server and every client decode with the shared schemes. See configureAPIServer,
	// buildComponents and "Schemes and data races" in README.md.
	apiOptions, err := configureAPIServer(ctx, o, creds, ports, apiListener)
	if err != nil {
		return apiServerExit(ctx, err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", ports.APIServer)
	apiCtx, cancelAPI := context.WithCancel(ctx)
	parts, err := buildComponents(apiCtx, o, server, creds)
	if err != nil {
		cancelAPI()
		apiListener.Close()
		return err
	}

	etcd, err := startEtcd(ctx, o.dir, ports, o.etcdFsync)
	if err != nil {
		cancelAPI()
		apiListener.Close()
		return err
	}
	defer etcd.stop()
	// Deferred after etcd.stop, so it runs first: the API server stops before etcd.
	defer cancelAPI()
	logf("etcd ready on 127.0.0.1:%d after %v", ports.EtcdClient, time.Since(started).Round(time.Millisecond))

	apiDone := make(chan error, 1)
	go func() {
		apiDone <- app.Run(apiCtx, apiOptions)
	}()

	kubeconfigPath := filepath.Join(o.dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfigPath, server, creds); err != nil {
		return err
	}

	bootstrapped := make(chan error, 1)
	go func() { bootstrapped <- bootstrap(apiCtx, server, creds) }()

	select {
	case err := <-apiDone:
		return apiServerExit(ctx, err)
	case err := <-etcd.failed():
		return fmt.Errorf("etcd failed: %w", err)
	case err := <-bootstrapped:
		if err != nil {
			if ctx.Err() != nil {
				return waitAPIServer(apiDone)
			}
			return fmt.Errorf("bootstrap: %w", err)
		}
	}

	if err := startComponents(apiCtx, o, server, kubeconfigPath, creds, parts); err != nil {
		if ctx.Err() != nil {
			return waitAPIServer(apiDone)
		}
		return err
	}
	if err := waitUntilUsable(apiCtx, o, server, creds); err != nil {
		if ctx.Err() != nil {
			return waitAPIServer(apiDone)
		}
		return err
	}

	if err := writeFileAtomic(readyPath, []byte(server+"\n"), 0o600); err != nil {
		return err
	}
	logf("ready: %s (kubeconfig %s) after %v", server, kubeconfigPath, time.Since(started).Round(time.Millisecond))

	select {
	case err := <-apiDone:
		return apiServerExit(ctx, err)
	case err := <-etcd.failed():
		cancelAPI()
		_ = waitAPIServer(apiDone)
		return fmt.Errorf("etcd failed: %w", err)
	}
}

// runsWorkloads: Pods get scheduled and run, claims bind.
func (o clusterOptions) runsWorkloads() bool { return o.controllers && o.workloads }

// components are the parts of the cluster that are built before anything runs.
type components struct {
	controllers *controllerClients
	provisioner *provisioner.ProvisionController // nil without workloads
}

// buildComponents makes, without starting anything, every part whose construction registers
// types into a process-wide runtime.Scheme (client-go's scheme.Scheme, legacyscheme.Scheme):
// such a registration writes the scheme's maps, and a write racing any decode (the API server's
// own informers, the bootstrap client, our controllers' watches) is a fatal "concurrent map read
// and map write" in Scheme.New. So it is called before etcd and the API server start. Today that
// is only the provisioner library's (storage.go); the rest of kube-controller-manager, the
// scheduler and KWOK register in package init() only. A RACE=1 build (README.md, "Schemes and
// data races") reports a new one.
func buildComponents(ctx context.Context, o clusterOptions, server string, c *credentials) (*components, error) {
	cc, err := newControllerClients(server, c)
	if err != nil {
		return nil, fmt.Errorf("controllers' client: %w", err)
	}
	parts := &components{controllers: cc}
	if o.runsWorkloads() {
		parts.provisioner, err = newProvisioner(ctx, server, c, cc.shared)
		if err != nil {
			return nil, fmt.Errorf("provisioner: %w", err)
		}
	}
	return parts, nil
}

// startComponents starts what acts on the API server's objects. Each part starts its own
// informers and returns at once; waitUntilUsable then waits for the visible results.
func startComponents(ctx context.Context, o clusterOptions, server, kubeconfigPath string, c *credentials, parts *components) error {
	shared := parts.controllers.shared
	if err := startControllers(ctx, parts.controllers, c, o.controllers, o.runsWorkloads()); err != nil {
		return fmt.Errorf("start controllers: %w", err)
	}
	if !o.runsWorkloads() {
		return nil
	}
	if err := startStorage(ctx, server, c, shared, parts.provisioner); err != nil {
		return fmt.Errorf("start storage: %w", err)
	}
	if err := startScheduler(ctx, server, c); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	if err := startKwok(ctx, kubeconfigPath, server, c, o.nodes); err != nil {
		return fmt.Errorf("start kwok: %w", err)
	}
	return nil
}

// apiServerExit turns the apiserver's return into our result: after a requested stop it is
// a clean exit whatever it says, otherwise an early return is always an error.
func apiServerExit(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if err != nil {
			logf("apiserver stopped: %v", err)
		}
		return nil
	}
	if err == nil {
		err = errors.New("stopped unexpectedly")
	}
	if strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w: kube-apiserver: %v", errPortInUse, err)
	}
	return fmt.Errorf("kube-apiserver: %w", err)
}

func waitAPIServer(apiDone <-chan error) error {
	if err := <-apiDone; err != nil {
		logf("apiserver stopped: %v", err)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s gitops-test-cluster: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}
