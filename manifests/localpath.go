package manifests

import (
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
)

// The local-path storage addon's names.
const (
	// LocalPathName names the provisioner's DaemonSet, ServiceAccount and
	// RBAC, and the command `kubeforge component local-path-provisioner`.
	LocalPathName = "local-path-provisioner"
	// LocalPathClass is the default StorageClass.
	LocalPathClass = "local-path"
	// LocalPathProvisioner is the provisioner name the class carries (the
	// same as components/localpath.ProvisionerName, which this package
	// must not import; a test holds them equal).
	LocalPathProvisioner = "kubeforge.io/local-path"
	// annDefaultClass marks the cluster's default StorageClass.
	annDefaultClass = "storageclass.kubernetes.io/is-default-class"
)

// LocalPathObjects are the local-path addon: the default StorageClass
// local-path (WaitForFirstConsumer, reclaim policy Delete) and its
// provisioner, a DaemonSet of the self-image's `kubeforge component
// local-path-provisioner` on every node, with the volume root mounted
// from the host and nothing else of the host. Its RBAC is what the SIG
// Storage provisioner controller uses: claims, volumes, classes, events,
// and reading Node objects (the provisioner reads its own node's hostname
// label for the volumes' nodeAffinity). It cannot create pods.
func LocalPathObjects(c *config.Config) []runtime.Object {
	root := LocalPathRoot(c)
	role := "system:kubeforge:" + LocalPathName
	return Addon{WorkloadRef: LocalPathWorkload,
		Command: []string{"--root=" + root},
		Env:     append([]corev1.EnvVar{nodeNameEnv()}, apiServerEnv(c)...),
		CPU:     "10m",
		Memory:  "20Mi",
		// Root, to make and delete the directories; of root's capabilities
		// only what deleting files that pods of other users wrote takes.
		Security: Security{User: ptr(int64(0)), Add: []corev1.Capability{"DAC_OVERRIDE", "FOWNER"}},
		Mounts:   []corev1.VolumeMount{{Name: "volumes", MountPath: root}},
		Volumes: []corev1.Volume{{Name: "volumes", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: root, Type: ptr(corev1.HostPathDirectoryOrCreate)}}}},
		Priority: "system-node-critical",
		// Every node that runs pods may be chosen for a claim.
		Tolerations:    anyTaint(),
		GracePeriod:    ptr(int64(5)),
		MaxUnavailable: ptr(intstr.FromString("100%")),
		ClusterRole: Rules{Name: role, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update"}},
			{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}}},
		Extra: []runtime.Object{&storagev1.StorageClass{TypeMeta: metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass"},
			ObjectMeta: metav1.ObjectMeta{Name: LocalPathClass, Labels: map[string]string{"k8s-app": LocalPathName},
				Annotations: map[string]string{annDefaultClass: "true"}},
			Provisioner:       LocalPathProvisioner,
			ReclaimPolicy:     ptr(corev1.PersistentVolumeReclaimDelete),
			VolumeBindingMode: ptr(storagev1.VolumeBindingWaitForFirstConsumer),
		}},
	}.Objects()
}

// LocalPathRoot is the configured volume root (the default when unset).
func LocalPathRoot(c *config.Config) string {
	if r := c.Kubeforge.Addons.LocalPath.Root; r != "" {
		return filepath.Clean(r)
	}
	return config.DefaultLocalPathRoot
}
