// The real kube-scheduler binds Pods to KWOK's Nodes, so that placement behaves as it does in a
// real cluster: resource requests must fit, node selectors, affinities, taints and topology
// spread are honoured, a PVC-using Pod waits for its volume, and an unschedulable Pod gets a
// PodScheduled=False condition with the scheduler's own message. It is built from
// k8s.io/kubernetes/pkg/scheduler with the default profile, the way
// cmd/kube-scheduler/app.Setup builds it, minus the parts a single in-process scheduler does not
// need: its HTTPS endpoint (healthz, metrics) and leader election.

package main

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/scheduler"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
)

func startScheduler(ctx context.Context, server string, c *credentials) error {
	cfg := adminRESTConfig(server, c)
	cfg.UserAgent = "gitops-test-cluster/scheduler"
	// kube-scheduler's defaults (componentconfig clientConnection).
	cfg.QPS = 50
	cfg.Burst = 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dynamicClient, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	config, err := latest.Default()
	if err != nil {
		return err
	}

	informerFactory := scheduler.NewInformerFactory(client, 0)
	dynamicInformers := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dynamicClient, 0, corev1.NamespaceAll, nil)
	broadcaster := events.NewEventBroadcasterAdapterWithContext(ctx, client)
	recorders := func(name string) events.EventRecorderLogger { return broadcaster.NewRecorder(name) }
	sched, err := scheduler.New(ctx, client, informerFactory, dynamicInformers, recorders,
		scheduler.WithComponentConfigVersion(config.APIVersion),
		scheduler.WithKubeConfig(cfg),
		scheduler.WithProfiles(config.Profiles...),
		scheduler.WithPercentageOfNodesToScore(config.PercentageOfNodesToScore),
		scheduler.WithPodMaxBackoffSeconds(config.PodMaxBackoffSeconds),
		scheduler.WithPodInitialBackoffSeconds(config.PodInitialBackoffSeconds),
		scheduler.WithExtenders(config.Extenders...),
		scheduler.WithParallelism(config.Parallelism),
	)
	if err != nil {
		return err
	}
	broadcaster.StartRecordingToSink(ctx.Done())
	informerFactory.Start(ctx.Done())
	dynamicInformers.Start(ctx.Done())
	go func() {
		// As kube-scheduler's Run: never schedule from a half-filled cache.
		informerFactory.WaitForCacheSync(ctx.Done())
		dynamicInformers.WaitForCacheSync(ctx.Done())
		if err := sched.WaitForHandlersSync(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "scheduler handlers are not fully synchronized")
		}
		sched.Run(ctx)
	}()
	return nil
}
