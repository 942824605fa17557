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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"
	"k8s.io/kubernetes/pkg/controller/clusterroleaggregation"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
	serviceaccountcontroller "k8s.io/kubernetes/pkg/controller/serviceaccount"
)

// startControllers runs the kube-controller-manager controllers whose absence a node-less
// cluster would make visible to a client. Always: ClusterRole aggregation, without which the
// built-in "admin", "edit" and "view" roles have no rules at all (RBAC would deny what any real
// cluster allows). With all=true also namespace deletion (finalizer "kubernetes"), the
// "default" ServiceAccount of each namespace (Pods need it), the "kube-root-ca.crt" ConfigMap
// of each namespace (a GitOps tool must learn not to prune it), and the garbage collector
// (ownerReference cascades, foreground/orphan deletion). They run with the admin identity
// rather than per-controller service accounts: this is a test cluster.
func startControllers(ctx context.Context, server string, c *credentials, all bool) error {
	cfg := adminRESTConfig(server, c)
	cfg.UserAgent = "gitops-test-cluster/controllers"
	// Same reasoning as kube-controller-manager's namespace controller: deleting a namespace
	// is a burst of discovery, list and delete calls, and throttling them only slows tests.
	cfg.QPS = 1000
	cfg.Burst = 2000

	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	metadataClient, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}

	// Managed fields are dead weight for controllers that only look at metadata and specs.
	trim := func(obj any) (any, error) {
		if accessor, err := meta.Accessor(obj); err == nil && accessor.GetManagedFields() != nil {
			accessor.SetManagedFields(nil)
		}
		return obj, nil
	}
	const resync = 12 * time.Hour
	shared := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(trim))
	metadataInformers := metadatainformer.NewSharedInformerFactoryWithOptions(metadataClient, resync, metadatainformer.WithTransform(trim))
	objectOrMetadata := informerfactory.NewInformerFactory(shared, metadataInformers)

	aggregation := clusterroleaggregation.NewClusterRoleAggregation(shared.Rbac().V1().ClusterRoles(), client.RbacV1())
	go aggregation.Run(ctx, 2)
	if !all {
		shared.Start(ctx.Done())
		return nil
	}

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

	shared.Start(ctx.Done())
	objectOrMetadata.Start(ctx.Done())
	close(informersStarted)
	return nil
}
