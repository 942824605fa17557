// Storage, so that PersistentVolumeClaims bind and the Pods that use them schedule, as in a kind
// cluster: a default StorageClass "standard", a dynamic provisioner that creates one
// PersistentVolume per claim (sigs.k8s.io/sig-storage-lib-external-provisioner, the library
// external provisioners are built on), and kube-controller-manager's binder, expander and PVC/PV
// protection controllers. The protection controllers matter more than they seem: the API server
// puts their finalizers on every claim and volume, and without them a deleted PVC (or a namespace
// holding one) would hang in Terminating forever.
//
// The volumes are hostPath volumes under /var/lib/gitops-test-cluster that nothing creates or
// mounts: KWOK's "kubelet" runs no containers. A claim asking for more storage is resized at once:
// the expander leaves volumes of external provisioners to an external resizer, which is us.

package main

import (
	"context"
	"fmt"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	csitrans "k8s.io/csi-translation-lib"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/volume/expand"
	"k8s.io/kubernetes/pkg/controller/volume/persistentvolume"
	"k8s.io/kubernetes/pkg/controller/volume/pvcprotection"
	"k8s.io/kubernetes/pkg/controller/volume/pvprotection"
	"k8s.io/kubernetes/pkg/volume/csimigration"
	provisioner "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

const (
	defaultStorageClass    = "standard"
	provisionerName        = "gitops-test-cluster/hostpath"
	volumeRoot             = "/var/lib/gitops-test-cluster/volumes"
	annDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"
	// annProvisionedBy marks the volumes a provisioner made (set by the provisioner library).
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

// newProvisioner builds the provisioner's controller, sharing the controllers' informers, without
// starting it. It must run before any goroutine decodes API objects: NewProvisionController
// (v13.0.0, controller.go) calls v1.AddToScheme(scheme.Scheme), i.e. it writes the maps of
// client-go's process-wide scheme, which every typed client and informer reads when it decodes
// (Scheme.New); done after the API server and the informers had started, it crashed the process
// with "concurrent map read and map write". See "Schemes and data races" in README.md.
func newProvisioner(ctx context.Context, server string, c *credentials, shared informers.SharedInformerFactory) (*provisioner.ProvisionController, error) {
	client, err := kubernetes.NewForConfig(storageRESTConfig(server, c))
	if err != nil {
		return nil, err
	}
	return provisioner.NewProvisionController(ctx, client, provisionerName, hostPathProvisioner{},
		provisioner.LeaderElection(false),
		provisioner.ClaimsInformer(shared.Core().V1().PersistentVolumeClaims().Informer()),
		provisioner.VolumesInformer(shared.Core().V1().PersistentVolumes().Informer()),
		provisioner.ClassesInformer(shared.Storage().V1().StorageClasses().Informer()),
	), nil
}

func storageRESTConfig(server string, c *credentials) *rest.Config {
	cfg := adminRESTConfig(server, c)
	cfg.UserAgent = "gitops-test-cluster/storage"
	return cfg
}

// startStorage creates the default StorageClass and starts the volume controllers, the
// provisioner built by newProvisioner and the resizer.
func startStorage(ctx context.Context, server string, c *credentials, shared informers.SharedInformerFactory, provisionController *provisioner.ProvisionController) error {
	client, err := kubernetes.NewForConfig(storageRESTConfig(server, c))
	if err != nil {
		return err
	}
	if err := ensureDefaultStorageClass(ctx, client); err != nil {
		return err
	}
	if err := startVolumeControllers(ctx, client, shared); err != nil {
		return err
	}
	go provisionController.Run(ctx)
	if err := startResizer(ctx, client, shared); err != nil {
		return err
	}
	shared.Start(ctx.Done())
	return nil
}

// ensureDefaultStorageClass creates "standard" if it is missing; a class someone changed is
// left alone (a test may have made another class the default on purpose).
func ensureDefaultStorageClass(ctx context.Context, client kubernetes.Interface) error {
	reclaim := corev1.PersistentVolumeReclaimDelete
	// Immediate, unlike kind's WaitForFirstConsumer: a claim synced on its own binds at once,
	// so waiting for it (kstatus: Bound) does not depend on a Pod using it.
	binding := storagev1.VolumeBindingImmediate
	expansion := true
	class := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        defaultStorageClass,
			Annotations: map[string]string{annDefaultStorageClass: "true"},
		},
		Provisioner:          provisionerName,
		ReclaimPolicy:        &reclaim,
		VolumeBindingMode:    &binding,
		AllowVolumeExpansion: &expansion,
	}
	_, err := client.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass %s: %w", defaultStorageClass, err)
	}
	return nil
}

// startVolumeControllers: kube-controller-manager's persistentvolume-binder,
// persistentvolume-expander, pvc-protection and pv-protection. No in-tree volume plugins: the
// only provisioner is the external one below.
func startVolumeControllers(ctx context.Context, client kubernetes.Interface, shared informers.SharedInformerFactory) error {
	core := shared.Core().V1()
	binder, err := persistentvolume.NewController(ctx, persistentvolume.ControllerParameters{
		KubeClient:                client,
		SyncPeriod:                15 * time.Second,
		VolumeInformer:            core.PersistentVolumes(),
		ClaimInformer:             core.PersistentVolumeClaims(),
		ClassInformer:             shared.Storage().V1().StorageClasses(),
		PodInformer:               core.Pods(),
		NodeInformer:              core.Nodes(),
		EnableDynamicProvisioning: true,
	})
	if err != nil {
		return fmt.Errorf("persistent-volume binder: %w", err)
	}
	translator := csitrans.New()
	expander, err := expand.NewExpandController(ctx, client, core.PersistentVolumeClaims(), nil, translator, csimigration.NewPluginManager(translator))
	if err != nil {
		return fmt.Errorf("persistent-volume expander: %w", err)
	}
	logger := klog.FromContext(ctx)
	claimProtection, err := pvcprotection.NewPVCProtectionController(logger, core.PersistentVolumeClaims(), core.Pods(), client)
	if err != nil {
		return fmt.Errorf("pvc protection: %w", err)
	}
	volumeProtection := pvprotection.NewPVProtectionController(logger, core.PersistentVolumes(), client)

	go binder.Run(ctx)
	go expander.Run(ctx)
	go claimProtection.Run(ctx, 1)
	go volumeProtection.Run(ctx, 1)
	return nil
}

// hostPathProvisioner makes the PersistentVolume object for a claim; there is no storage behind
// it to create or delete.
type hostPathProvisioner struct{}

func (hostPathProvisioner) Provision(_ context.Context, options provisioner.ProvisionOptions) (*corev1.PersistentVolume, provisioner.ProvisioningState, error) {
	claim := options.PVC
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	reclaim := corev1.PersistentVolumeReclaimDelete
	if options.StorageClass.ReclaimPolicy != nil {
		reclaim = *options.StorageClass.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: options.PVName},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			MountOptions:                  options.StorageClass.MountOptions,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path.Join(volumeRoot, options.PVName), Type: &hostPathType},
			},
		},
	}, provisioner.ProvisioningFinished, nil
}

func (hostPathProvisioner) Delete(context.Context, *corev1.PersistentVolume) error { return nil }

// startResizer finishes the resizes the expand controller hands to an external resizer for our
// volumes: the volume's capacity, then the claim's status, become the requested size.
func startResizer(ctx context.Context, client kubernetes.Interface, shared informers.SharedInformerFactory) error {
	claims := shared.Core().V1().PersistentVolumeClaims()
	volumes := shared.Core().V1().PersistentVolumes().Lister()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())
	enqueue := func(obj any) {
		if claim, ok := obj.(*corev1.PersistentVolumeClaim); ok && needsResize(claim) {
			queue.Add(cache.MetaObjectToName(claim))
		}
	}
	if _, err := claims.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	resize := func(name cache.ObjectName) error {
		claim, err := claims.Lister().PersistentVolumeClaims(name.Namespace).Get(name.Name)
		if apierrors.IsNotFound(err) || (err == nil && !needsResize(claim)) {
			return nil
		}
		if err != nil {
			return err
		}
		want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		volume, err := volumes.Get(claim.Spec.VolumeName)
		if err != nil {
			return err
		}
		if volume.Annotations[annProvisionedBy] != provisionerName {
			return nil
		}
		if have := volume.Spec.Capacity[corev1.ResourceStorage]; have.Cmp(want) < 0 {
			volume = volume.DeepCopy()
			volume.Spec.Capacity[corev1.ResourceStorage] = want
			if _, err := client.CoreV1().PersistentVolumes().Update(ctx, volume, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		claim = claim.DeepCopy()
		claim.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
		claim.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: want}
		claim.Status.AllocatedResourceStatuses = nil
		claim.Status.Conditions = nil
		_, err = client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{})
		return err
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	go func() {
		for {
			name, quit := queue.Get()
			if quit {
				return
			}
			if err := resize(name); err != nil {
				klog.FromContext(ctx).Error(err, "resize", "claim", name)
				queue.AddRateLimited(name)
			} else {
				queue.Forget(name)
			}
			queue.Done(name)
		}
	}()
	return nil
}

// needsResize: a bound claim asking for more than it has (whether the volume is ours is checked
// when it is handled).
func needsResize(claim *corev1.PersistentVolumeClaim) bool {
	if claim.Status.Phase != corev1.ClaimBound {
		return false
	}
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have := claim.Status.Capacity[corev1.ResourceStorage]
	return have.Cmp(want) < 0
}
