// The kube-controller-manager part of the cluster: the controllers that turn a Deployment into
// ReplicaSets and Pods, a CronJob into Jobs, a Service into EndpointSlices, and that clean up
// after deletions. They are the real ones from k8s.io/kubernetes/pkg/controller, built the way
// cmd/kube-controller-manager/app builds them (same constructors, same worker counts), so the
// status a client reads (Deployment Available/Progressing/ProgressDeadlineExceeded, Job
// Complete/Failed, ...) is computed exactly as in a real cluster. Storage controllers are in
// storage.go. They all run with the admin identity rather than per-controller service
// accounts: this is a test cluster.
//
// Left out: node lifecycle (see apiserver.go: KWOK's Nodes never go NotReady), the horizontal
// pod autoscaler (there is no metrics API, it could only report FailedGetResourceMetric),
// ReplicationControllers, certificates, bootstrap tokens, resource quota, pod GC.

package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	cacheddiscovery "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"
	"k8s.io/kubernetes/pkg/controller/clusterroleaggregation"
	"k8s.io/kubernetes/pkg/controller/cronjob"
	"k8s.io/kubernetes/pkg/controller/daemon"
	"k8s.io/kubernetes/pkg/controller/deployment"
	"k8s.io/kubernetes/pkg/controller/disruption"
	"k8s.io/kubernetes/pkg/controller/endpointslice"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	"k8s.io/kubernetes/pkg/controller/job"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
	"k8s.io/kubernetes/pkg/controller/replicaset"
	serviceaccountcontroller "k8s.io/kubernetes/pkg/controller/serviceaccount"
	"k8s.io/kubernetes/pkg/controller/statefulset"
	"k8s.io/kubernetes/pkg/controller/ttlafterfinished"
)

// controllerClients are the client and the shared informer factory of the controllers (and of
// storage.go's, which share its caches). They are made before anything runs (see
// buildComponents in main.go); the factory is started by startControllers and startStorage.
type controllerClients struct {
	cfg    *rest.Config
	client kubernetes.Interface
	shared informers.SharedInformerFactory
}

func newControllerClients(server string, c *credentials) (*controllerClients, error) {
	cfg := adminRESTConfig(server, c)
	cfg.UserAgent = "gitops-test-cluster/controllers"
	// Same reasoning as kube-controller-manager's namespace controller: deleting a namespace
	// is a burst of discovery, list and delete calls, and throttling them only slows tests.
	cfg.QPS = 1000
	cfg.Burst = 2000

	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	const resync = 12 * time.Hour
	shared := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(trimManagedFields))
	return &controllerClients{cfg: cfg, client: client, shared: shared}, nil
}

// trimManagedFields: managed fields are dead weight for controllers that only look at metadata
// and specs.
func trimManagedFields(obj any) (any, error) {
	if accessor, err := meta.Accessor(obj); err == nil && accessor.GetManagedFields() != nil {
		accessor.SetManagedFields(nil)
	}
	return obj, nil
}

// startControllers starts ClusterRole aggregation always, with housekeeping the namespace,
// service-account, root-CA and garbage-collector controllers, and with workloads the rest of
// kube-controller-manager we run, and starts the shared informer factory.
//
// Always: ClusterRole aggregation, without which the built-in "admin", "edit" and "view" roles
// have no rules at all (RBAC would deny what any real cluster allows). Housekeeping:
// namespace deletion (finalizer "kubernetes"), the "default" ServiceAccount of each namespace
// (Pods need it), the "kube-root-ca.crt" ConfigMap of each namespace (a GitOps tool must learn
// not to prune it), the garbage collector (ownerReference cascades, foreground/orphan
// deletion).
func startControllers(ctx context.Context, cc *controllerClients, c *credentials, housekeeping, workloads bool) error {
	cfg, client, shared := cc.cfg, cc.client, cc.shared
	aggregation := clusterroleaggregation.NewClusterRoleAggregation(shared.Rbac().V1().ClusterRoles(), client.RbacV1())
	go aggregation.Run(ctx, 2)
	if housekeeping {
		if err := startHousekeeping(ctx, c, cfg, client, shared); err != nil {
			return err
		}
	}
	if workloads {
		if err := startWorkloadControllers(ctx, cfg, client, shared); err != nil {
			return err
		}
	}
	shared.Start(ctx.Done())
	return nil
}

// startHousekeeping: namespaces, service accounts, root CA ConfigMaps, garbage collection.
func startHousekeeping(ctx context.Context, c *credentials, cfg *rest.Config, client kubernetes.Interface, shared informers.SharedInformerFactory) error {
	metadataClient, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	const resync = 12 * time.Hour
	metadataInformers := metadatainformer.NewSharedInformerFactoryWithOptions(metadataClient, resync, metadatainformer.WithTransform(trimManagedFields))
	objectOrMetadata := informerfactory.NewInformerFactory(shared, metadataInformers)

	nsc := namespacecontroller.NewNamespaceController(
		ctx, client, metadataClient,
		client.Discovery().ServerPreferredNamespacedResources,
		shared.Core().V1().Namespaces(),
		5*time.Minute,
		corev1.FinalizerKubernetes,
	)

	sac, err := serviceaccountcontroller.NewServiceAccountsController(
		klog.FromContext(ctx),
		shared.Core().V1().ServiceAccounts(),
		shared.Core().V1().Namespaces(),
		client,
		serviceaccountcontroller.DefaultServiceAccountsControllerOptions(),
	)
	if err != nil {
		return fmt.Errorf("service-account controller: %w", err)
	}

	rootCA, err := rootcacertpublisher.NewPublisher(
		shared.Core().V1().ConfigMaps(),
		shared.Core().V1().Namespaces(),
		client,
		c.caPEM,
	)
	if err != nil {
		return fmt.Errorf("root CA publisher: %w", err)
	}

	// The GC's mapper must not share its discovery client with the one Sync polls: Sync
	// resets the mapper when it sees new resources (a CRD installed by a test).
	mapperDiscovery, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	restMapper := restmapper.NewDeferredDiscoveryRESTMapper(cacheddiscovery.NewMemCacheClient(mapperDiscovery))
	informersStarted := make(chan struct{})
	gc, err := garbagecollector.NewGarbageCollector(
		ctx, client, metadataClient, restMapper,
		garbagecollector.DefaultIgnoredResources(),
		objectOrMetadata, informersStarted,
	)
	if err != nil {
		return fmt.Errorf("garbage collector: %w", err)
	}

	go nsc.Run(ctx, 5)
	go sac.Run(ctx, 1)
	go rootCA.Run(ctx, 1)
	// A short sync period: a test that installs a CRD and then relies on cascading deletion
	// of its objects should not wait the controller-manager's 30 s for the GC to notice it.
	const gcSync = 5 * time.Second
	go gc.Run(ctx, 5, gcSync)
	go gc.Sync(ctx, discoveryClient, gcSync)
	go wait.Until(restMapper.Reset, 30*time.Second, ctx.Done())

	// The GC waits for this signal before it relies on its informers (shared ones included);
	// informers registered later by other controllers start with the next shared.Start.
	shared.Start(ctx.Done())
	objectOrMetadata.Start(ctx.Done())
	close(informersStarted)
	return nil
}

// startWorkloadControllers: Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
// finished-Job TTLs, EndpointSlices and PodDisruptionBudget status. Worker counts are
// kube-controller-manager's defaults.
func startWorkloadControllers(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, shared informers.SharedInformerFactory) error {
	core, apps, batch := shared.Core().V1(), shared.Apps().V1(), shared.Batch().V1()

	deployments, err := deployment.NewDeploymentController(ctx, apps.Deployments(), apps.ReplicaSets(), core.Pods(), client)
	if err != nil {
		return fmt.Errorf("deployment controller: %w", err)
	}
	replicaSets := replicaset.NewReplicaSetController(ctx, apps.ReplicaSets(), core.Pods(), client, replicaset.BurstReplicas)
	statefulSets := statefulset.NewStatefulSetController(ctx, core.Pods(), apps.StatefulSets(), core.PersistentVolumeClaims(), apps.ControllerRevisions(), client)
	daemonSets, err := daemon.NewDaemonSetsController(ctx, apps.DaemonSets(), apps.ControllerRevisions(), core.Pods(), core.Nodes(), client,
		flowcontrol.NewBackOff(1*time.Second, 15*time.Minute))
	if err != nil {
		return fmt.Errorf("daemonset controller: %w", err)
	}
	// The Workload and PodGroup informers are only for the alpha gang-scheduling of Jobs
	// (feature WorkloadWithJob), which is off.
	jobs, err := job.NewController(ctx, client, core.Pods(), batch.Jobs(), nil, nil)
	if err != nil {
		return fmt.Errorf("job controller: %w", err)
	}
	cronJobs, err := cronjob.NewControllerV2(ctx, batch.Jobs(), batch.CronJobs(), client)
	if err != nil {
		return fmt.Errorf("cronjob controller: %w", err)
	}
	finishedJobs := ttlafterfinished.New(ctx, batch.Jobs(), client)
	endpointSlices := endpointslice.NewController(ctx, core.Pods(), core.Services(), core.Nodes(),
		shared.Discovery().V1().EndpointSlices(), 100, client, 0)

	// The disruption controller finds the scale of any workload kind a PDB selects, custom
	// resources included, through the scale subresource.
	disruptionDiscovery, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	disruptionMapper := restmapper.NewDeferredDiscoveryRESTMapper(cacheddiscovery.NewMemCacheClient(disruptionDiscovery))
	scales, err := scale.NewForConfig(cfg, disruptionMapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disruptionDiscovery))
	if err != nil {
		return err
	}
	budgets := disruption.NewDisruptionController(ctx, core.Pods(), shared.Policy().V1().PodDisruptionBudgets(),
		core.ReplicationControllers(), apps.ReplicaSets(), apps.Deployments(), apps.StatefulSets(),
		client, disruptionMapper, scales, disruptionDiscovery)
	go wait.Until(disruptionMapper.Reset, 30*time.Second, ctx.Done())

	go deployments.Run(ctx, 5)
	go replicaSets.Run(ctx, 5)
	go statefulSets.Run(ctx, 5)
	go daemonSets.Run(ctx, 2)
	go jobs.Run(ctx, 5)
	go cronJobs.Run(ctx, 5)
	go finishedJobs.Run(ctx, 5)
	go endpointSlices.Run(ctx, 5)
	go budgets.Run(ctx)
	return nil
}
