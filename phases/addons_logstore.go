package phases

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/manifests"
)

// runAddonLogStore installs the cluster log store (VictoriaLogs, `kubeforge
// component log-store`) unless KubeforgeConfiguration
// addons.logStore.enabled is false. Its data goes to a volume claim of the
// local-path StorageClass when the cluster has that class, else to a
// hostPath on a control-plane node; a rerun keeps what the StatefulSet
// already uses (its volume claims cannot change).
func runAddonLogStore(ctx context.Context, d *InitData) error {
	const phase = "addons"
	ls := d.Cfg.Kubeforge.Addons.LogStore
	if !ls.On() {
		d.Out.Printf(phase, "Skipping the log store: KubeforgeConfiguration addons.logStore.enabled is false")
		return nil
	}
	var st manifests.LogStorage
	var have string
	if !d.DryRun {
		client, _, err := d.clients()
		if err != nil {
			return err
		}
		if st, err = logStorage(ctx, client); err != nil {
			return err
		}
		if have, err = logQueryKey(ctx, client); err != nil {
			return err
		}
	}
	key, err := queryKeyOr(have)
	if err != nil {
		return err
	}
	st.QueryKey = key
	if st.Class != "" {
		d.Out.Printf(phase, "Log store data: a %s volume claim (StorageClass %s)", manifests.LogStoreVolumeSize, st.Class)
	} else {
		d.Out.Printf(phase, "Log store data: %s on a control-plane node (no StorageClass %s at init)", manifests.LogStoreHostDir, manifests.LogStoreClass)
	}
	return applyAddon(ctx, d, fmt.Sprintf("log store (retention %s)", ls.Retention), manifests.LogStoreObjects(d.Cfg, st)...)
}

// logStorage chooses the store's storage: what an existing StatefulSet
// uses, else a local-path volume claim when that class exists, else the
// control-plane hostPath.
func logStorage(ctx context.Context, client kubernetes.Interface) (manifests.LogStorage, error) {
	sts, err := client.AppsV1().StatefulSets(metav1.NamespaceSystem).Get(ctx, manifests.LogStoreName, metav1.GetOptions{})
	switch {
	case err == nil:
		for _, t := range sts.Spec.VolumeClaimTemplates {
			if t.Spec.StorageClassName != nil {
				return manifests.LogStorage{Class: *t.Spec.StorageClassName}, nil
			}
		}
		return manifests.LogStorage{}, nil
	case !apierrors.IsNotFound(err):
		return manifests.LogStorage{}, fmt.Errorf("read StatefulSet %s/%s: %w", metav1.NamespaceSystem, manifests.LogStoreName, err)
	}
	_, err = client.StorageV1().StorageClasses().Get(ctx, manifests.LogStoreClass, metav1.GetOptions{})
	switch {
	case err == nil:
		return manifests.LogStorage{Class: manifests.LogStoreClass}, nil
	case apierrors.IsNotFound(err):
		return manifests.LogStorage{}, nil
	default:
		return manifests.LogStorage{}, fmt.Errorf("look for StorageClass %s: %w", manifests.LogStoreClass, err)
	}
}

// logQueryKey is the key of an existing Secret LogStoreQueryKeySecret
// (kept: the store's pod holds it), or "".
func logQueryKey(ctx context.Context, client kubernetes.Interface) (string, error) {
	s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, manifests.LogStoreQueryKeySecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read Secret %s/%s: %w", metav1.NamespaceSystem, manifests.LogStoreQueryKeySecret, err)
	}
	return string(s.Data[manifests.LogStoreQueryKeyField]), nil
}

// queryKeyOr returns have, or a new random key (32 bytes, hex) when there
// is none.
func queryKeyOr(have string) (string, error) {
	if have != "" {
		return have, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
