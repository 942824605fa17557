// KWOK (sigs.k8s.io/kwok) plays the kubelet: it keeps --nodes fake Nodes Ready (status,
// capacity, heartbeats through Leases in kube-node-lease) and moves every Pod bound to them
// through its lifecycle by "stages" — status patches chosen by selectors over the object. We run
// its controller package in-process with kwok's own stage definitions ("fast" pods: Running and
// Ready as soon as they are bound, Job Pods Succeeded right after, deleted Pods removed; "fast"
// node initialisation and the lease heartbeat) plus the failure convention of stages.yaml, which
// the tests and the demo use to make a rollout fail for real:
//
//	image tag "broken": the container never starts (waiting, ImagePullBackOff), Pod never Ready
//	image tag "crash":  CrashLoopBackOff, restartCount grows every 5 s, last exit code 1
//	image tag "fail":   a Job's Pod ends Failed with exit code 1 (the Job counts it toward
//	                    its backoffLimit)
//
// Anything else runs. To make that hold, kwok's pod-ready stage is narrowed to Pods without a
// broken or crash image, and its pod-complete stage to Pods without a crash or fail image.
//
// This is the wiring of kwok's own binary (pkg/kwok/cmd), minus its config loading (the stages
// are parsed here), its HTTP server (logs, exec, port-forward: nothing runs to attach to) and
// its Stage CRDs (the stages are fixed for the life of the process).

package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/apis/v1alpha1"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	kwokclient "sigs.k8s.io/kwok/pkg/utils/client"
)

//go:embed stages.yaml
var failureStages string

const (
	maxNodes = 100
	// nodeLabel marks the Nodes this process made, so a restart with fewer --nodes removes
	// the extra ones and nothing else.
	nodeLabel = "gitops-test-cluster/fake-node"
	// Same as kwokctl's default: the lease is renewed every 10 s.
	nodeLeaseSeconds = 40
	// kind's pod subnet; each Node gets its own /24 of it, and KWOK hands out Pod IPs from it.
	podCIDR = "10.244.0.0/16"
)

// Selectors that keep kwok's own pod stages off the Pods the failure stages own: a jq test on
// the tags of the Pod's container images.
var (
	notBrokenOrCrash = excludeImages("broken|crash")
	notCrashOrFail   = excludeImages("crash|fail")
)

func excludeImages(tags string) internalversion.MatchExpression {
	return internalversion.MatchExpression{JQ: &internalversion.SelectorJQ{
		Key:      fmt.Sprintf(`.spec.containers.[].image | test(":(%s)(@|$)")`, tags),
		Operator: internalversion.SelectorOpNotIn,
		Values:   []string{"true"},
	}}
}

func startKwok(ctx context.Context, kubeconfigPath, server string, c *credentials, nodes int) error {
	stages, err := kwokStages()
	if err != nil {
		return err
	}
	if err := ensureNodes(ctx, server, c, nodes); err != nil {
		return err
	}

	// kwok logs through its own slog wrapper; warnings are enough in cluster.log.
	ctx = kwoklog.NewContext(ctx, kwoklog.NewLogger(os.Stderr, kwoklog.LevelWarn))
	clientset, err := kwokclient.NewClientset("", kubeconfigPath)
	if err != nil {
		return err
	}
	restConfig, err := clientset.ToRESTConfig()
	if err != nil {
		return err
	}
	dynamicClient, err := clientset.ToDynamicClient()
	if err != nil {
		return err
	}
	restMapper, err := clientset.ToRESTMapper()
	if err != nil {
		return err
	}
	restClient, err := rest.RESTClientFor(restConfig)
	if err != nil {
		return err
	}
	typedClient, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	ctr, err := controllers.NewController(controllers.Config{
		Clock:                      clock.RealClock{},
		DynamicClient:              dynamicClient,
		RESTClient:                 restClient,
		RESTMapper:                 restMapper,
		ImpersonatingDynamicClient: clientset.ToImpersonatingDynamicClient(),
		ImpersonatingTypedClient:   clientset.ToImpersonatingTypedClient(),
		TypedClient:                typedClient,
		ManageAllNodes:             true,
		CIDR:                       podCIDR,
		NodeIP:                     nodeIP(0),
		LocalStages:                stages,
		PodPlayStageParallelism:    4,
		NodePlayStageParallelism:   4,
		NodeLeaseParallelism:       4,
		NodeLeaseDurationSeconds:   nodeLeaseSeconds,
		PodsOnNodeSyncParallelism:  1,
		// kwok only plays Nodes whose Lease it holds. A fixed identity (the flock on the state
		// directory makes this process the only one) lets a restarted cluster take its Leases
		// back at once instead of waiting the 40 s for its previous run's to expire.
		ID: "gitops-test-cluster-kwok",
	})
	if err != nil {
		return err
	}
	return ctr.Start(ctx)
}

// kwokStages: kwok's fast node and pod stages (the pod ones narrowed as said above) and ours.
func kwokStages() (map[internalversion.StageResourceRef][]*internalversion.Stage, error) {
	documents := []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for _, doc := range strings.Split(failureStages, "\n---\n") {
		if strings.TrimSpace(doc) != "" {
			documents = append(documents, doc)
		}
	}
	byResource := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	for _, doc := range documents {
		stage, err := parseStage(doc)
		if err != nil {
			return nil, err
		}
		switch stage.Name {
		case "pod-ready":
			stage.Spec.Selector.MatchExpressions = append(stage.Spec.Selector.MatchExpressions, notBrokenOrCrash)
		case "pod-complete":
			stage.Spec.Selector.MatchExpressions = append(stage.Spec.Selector.MatchExpressions, notCrashOrFail)
		}
		byResource[stage.Spec.ResourceRef] = append(byResource[stage.Spec.ResourceRef], stage)
	}
	return byResource, nil
}

func parseStage(doc string) (*internalversion.Stage, error) {
	var stage v1alpha1.Stage
	if err := yaml.UnmarshalStrict([]byte(doc), &stage); err != nil {
		return nil, fmt.Errorf("kwok stage: %w", err)
	}
	if stage.Kind != v1alpha1.StageKind || stage.Spec.Selector == nil {
		return nil, fmt.Errorf("kwok stage %q: not a Stage with a selector", stage.Name)
	}
	v1alpha1.SetObjectDefaults_Stage(&stage)
	return internalversion.ConvertToInternalStage(&stage)
}

func nodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i+1) }

// nodeIP: the addresses kind's Docker network would give, 172.18.0.2 onwards.
func nodeIP(i int) string { return fmt.Sprintf("172.18.0.%d", i+2) }

// ensureNodes creates kwok-node-1..N (a Node's status is kept on create, so they start with
// their addresses and capacity) and deletes fake Nodes beyond N left by an earlier run.
func ensureNodes(ctx context.Context, server string, c *credentials, n int) error {
	client, err := kubernetes.NewForConfig(adminRESTConfig(server, c))
	if err != nil {
		return err
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("16"),
		corev1.ResourceMemory:           resource.MustParse("64Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: nodeName(i),
				Labels: map[string]string{
					nodeLabel:                        "true",
					corev1.LabelHostname:             nodeName(i),
					corev1.LabelOSStable:             "linux",
					corev1.LabelArchStable:           "amd64",
					"type":                           "kwok",
					"node-role.kubernetes.io/worker": "",
				},
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			},
			Spec: corev1.NodeSpec{
				PodCIDR:  fmt.Sprintf("10.244.%d.0/24", i+1),
				PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i+1)},
			},
			Status: corev1.NodeStatus{
				Capacity:    capacity,
				Allocatable: capacity,
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: nodeIP(i)},
					{Type: corev1.NodeHostName, Address: nodeName(i)},
				},
			},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Node %s: %w", node.Name, err)
		}
	}
	existing, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeLabel})
	if err != nil {
		return err
	}
	var errs []error
	for _, node := range existing.Items {
		wanted := false
		for i := range n {
			wanted = wanted || node.Name == nodeName(i)
		}
		if !wanted {
			err := client.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
