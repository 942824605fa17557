package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	restrictedNamespace = "restricted-ns"
	clusterName         = "gitops-test"
)

func adminRESTConfig(server string, c *credentials) *rest.Config {
	return &rest.Config{
		Host:            server,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		UserAgent:       "gitops-test-cluster",
		QPS:             100,
		Burst:           200,
	}
}

// bootstrap waits for /readyz and then creates the objects tests rely on: the namespace the
// "restricted" user may read, and its RoleBinding to the built-in "view" ClusterRole (which
// only exists once the rbac/bootstrap-roles post-start hook, part of /readyz, has run).
func bootstrap(ctx context.Context, server string, c *credentials) error {
	client, err := kubernetes.NewForConfig(adminRESTConfig(server, c))
	if err != nil {
		return err
	}
	var lastErr error
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			break
		}
		if err != nil {
			lastErr = err
		} else {
			lastErr = fmt.Errorf("/readyz: %s", body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last /readyz error: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restrictedNamespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", restrictedNamespace, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "restricted-view", Namespace: restrictedNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: restrictedUser}},
	}
	if _, err := client.RbacV1().RoleBindings(restrictedNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create rolebinding: %w", err)
	}
	return nil
}

// writeKubeconfig writes contexts "admin" (current) and "restricted" (default namespace
// restricted-ns), with the CA embedded so the file works from any working directory.
func writeKubeconfig(path, server string, c *credentials) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: c.adminToken}
	cfg.AuthInfos[restrictedUser] = &clientcmdapi.AuthInfo{Token: c.restrictedToken}
	cfg.Contexts["admin"] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: adminUser}
	cfg.Contexts["restricted"] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: restrictedUser, Namespace: restrictedNamespace}
	cfg.CurrentContext = "admin"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600)
}

// waitUntilUsable returns once a client can rely on the cluster: ClusterRole "view" is
// aggregated and, with workloads, every fake Node is Ready and the default StorageClass
// exists. Until then a Pod could stay Pending for want of a node, or a PVC for want of a class,
// and a test would race the cluster's own start-up.
func waitUntilUsable(ctx context.Context, o clusterOptions, server string, c *credentials) error {
	client, err := kubernetes.NewForConfig(adminRESTConfig(server, c))
	if err != nil {
		return err
	}
	checks := []readinessCheck{{"ClusterRole view has rules", func() (bool, error) {
		role, err := client.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		return err == nil && len(role.Rules) > 0, ignoreNotFound(err)
	}}}
	if o.runsWorkloads() {
		checks = append(checks,
			readinessCheck{fmt.Sprintf("%d Nodes are Ready", o.nodes), func() (bool, error) {
				return nodesReady(ctx, client, o.nodes)
			}},
			readinessCheck{"StorageClass " + defaultStorageClass + " is the default", func() (bool, error) {
				class, err := client.StorageV1().StorageClasses().Get(ctx, defaultStorageClass, metav1.GetOptions{})
				return err == nil && class.Annotations[annDefaultStorageClass] == "true", ignoreNotFound(err)
			}},
		)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, check := range checks {
		for {
			ok, err := check.done()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not ready after 60s: waiting until %s (last error: %v)", check.what, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

type readinessCheck struct {
	what string
	done func() (bool, error)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// nodesReady: kwok-node-1..N all report Ready=True (set by KWOK's node-initialize stage).
func nodesReady(ctx context.Context, client kubernetes.Interface, n int) (bool, error) {
	for i := range n {
		node, err := client.CoreV1().Nodes().Get(ctx, nodeName(i), metav1.GetOptions{})
		if err != nil {
			return false, ignoreNotFound(err)
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
		}
		if !ready {
			return false, nil
		}
	}
	return true, nil
}
