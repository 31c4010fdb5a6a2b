// Command provisioner gives the test ground's single node dynamic storage: each claim of its
// StorageClass gets a directory under -root on the host, as a `local` PersistentVolume pinned to
// the node the scheduler chose (late binding), and the directory goes when the volume is deleted.
// The PersistentVolume controller protocol (claims, volumes, retries, events) is the Kubernetes
// storage SIG's provisioner library; this file only makes and removes directories.
//
// `local` rather than `hostPath` volumes: the kubelet applies a pod's fsGroup to them, so a
// non-root pod (n8n runs as uid 1000) can write its volume.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// hostnameLabel is the node label a local volume's node affinity names.
const hostnameLabel = "kubernetes.io/hostname"

type directories struct {
	root string
}

func (d directories) Provision(_ context.Context, options controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	node := options.SelectedNodeName
	if node == "" {
		return nil, controller.ProvisioningFinished, errors.New("no node selected: the StorageClass must bind on first consumer (WaitForFirstConsumer)")
	}
	path := filepath.Join(d.root, options.PVName)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	// Writable by whoever the pod runs as; the kubelet also hands it to the pod's fsGroup.
	if err := os.Chmod(path, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	claim := options.PVC
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: options.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: *options.StorageClass.ReclaimPolicy,
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: claim.Spec.Resources.Requests[v1.ResourceStorage]},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				Local: &v1.LocalVolumeSource{Path: path},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: hostnameLabel, Operator: v1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

func (d directories) Delete(_ context.Context, volume *v1.PersistentVolume) error {
	local := volume.Spec.Local
	if local == nil || filepath.Dir(local.Path) != d.root || !strings.HasPrefix(filepath.Base(local.Path), "pvc-") {
		return &controller.IgnoredError{Reason: "not a directory this provisioner made"}
	}
	return os.RemoveAll(local.Path)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the provisioner's identity")
	name := flag.String("name", "", "provisioner name (the StorageClass's provisioner)")
	root := flag.String("root", "", "directory the volumes are made in")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *name == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "usage: provisioner -kubeconfig FILE -name NAME -root DIR")
		os.Exit(2)
	}
	absolute, err := filepath.Abs(*root)
	if err == nil {
		err = os.MkdirAll(absolute, 0o755)
	}
	if err != nil {
		klog.Fatalf("volume root: %v", err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	controller.NewProvisionController(ctx, client, *name, directories{root: absolute},
		controller.LeaderElection(false),
	).Run(ctx)
}
