// kreg-local-path-provisioner: a tiny host-process dynamic provisioner for the kreg test cluster,
// modelled on kind's local-path-provisioner. For every pending PVC whose StorageClass names this
// provisioner (and, for WaitForFirstConsumer, once the scheduler picked a node) it creates a directory
// under --base-dir and a hostPath PV pre-bound to the claim; released PVs with reclaimPolicy Delete are
// removed together with their directory. Polling (default 1s) keeps it simple and restart-safe.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annPath          = "kreg.local/path"
)

var (
	kubeconfig  = flag.String("kubeconfig", "", "kubeconfig file")
	baseDir     = flag.String("base-dir", "/var/lib/kreg-cluster/volumes", "directory holding the volumes")
	provisioner = flag.String("provisioner-name", "kreg.local/local-path", "provisioner name in StorageClasses")
	nodeName    = flag.String("node-name", "127.0.0.1", "node the volumes live on (kubernetes.io/hostname)")
	interval    = flag.Duration("interval", time.Second, "poll interval")
)

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if err := os.MkdirAll(*baseDir, 0o755); err != nil {
		klog.Fatalf("base dir: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	klog.Infof("provisioner %s started, base dir %s, node %s", *provisioner, *baseDir, *nodeName)
	for {
		if err := once(ctx, cs); err != nil && ctx.Err() == nil {
			klog.Errorf("sync: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

func once(ctx context.Context, cs kubernetes.Interface) error {
	scs, err := cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	wffc := map[string]bool{}
	reclaim := map[string]corev1.PersistentVolumeReclaimPolicy{}
	for _, sc := range scs.Items {
		if sc.Provisioner != *provisioner {
			continue
		}
		ours[sc.Name] = true
		wffc[sc.Name] = sc.VolumeBindingMode != nil && string(*sc.VolumeBindingMode) == "WaitForFirstConsumer"
		reclaim[sc.Name] = corev1.PersistentVolumeReclaimDelete
		if sc.ReclaimPolicy != nil {
			reclaim[sc.Name] = *sc.ReclaimPolicy
		}
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		sc := ""
		if pvc.Spec.StorageClassName != nil {
			sc = *pvc.Spec.StorageClassName
		}
		if !ours[sc] || pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
			continue
		}
		if wffc[sc] {
			n := pvc.Annotations[annSelectedNode]
			if n == "" {
				continue
			}
			if n != *nodeName {
				klog.Warningf("pvc %s/%s selected node %q, not ours (%q); skipping", pvc.Namespace, pvc.Name, n, *nodeName)
				continue
			}
		}
		if err := provision(ctx, cs, pvc, sc, reclaim[sc]); err != nil {
			klog.Errorf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations[annProvisionedBy] != *provisioner || pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.DeletionTimestamp != nil {
			continue
		}
		if p := pv.Annotations[annPath]; p != "" && strings.HasPrefix(filepath.Clean(p), filepath.Clean(*baseDir)+"/") {
			if err := os.RemoveAll(p); err != nil {
				klog.Errorf("remove %s: %v", p, err)
				continue
			}
		}
		if err := cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			klog.Errorf("delete pv %s: %v", pv.Name, err)
			continue
		}
		klog.Infof("deleted pv %s and its directory", pv.Name)
	}
	return nil
}

func provision(ctx context.Context, cs kubernetes.Interface, pvc *corev1.PersistentVolumeClaim, sc string, rp corev1.PersistentVolumeReclaimPolicy) error {
	name := "pvc-" + string(pvc.UID)
	dir := filepath.Join(*baseDir, fmt.Sprintf("%s_%s_%s", name, pvc.Namespace, pvc.Name))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("no storage request")
	}
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	hpType := corev1.HostPathDirectoryOrCreate
	fs := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: *provisioner, annPath: dir},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: rp,
			StorageClassName:              sc,
			VolumeMode:                    &fs,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hpType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{*nodeName},
				}}}},
			}},
		},
	}
	_, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	klog.Infof("provisioned pv %s for %s/%s at %s", name, pvc.Namespace, pvc.Name, dir)
	return nil
}
