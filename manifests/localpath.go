package manifests

import (
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
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
	ns := metav1.NamespaceSystem
	root := LocalPathRoot(c)
	labels := map[string]string{"k8s-app": LocalPathName}
	falseV, trueV := false, true
	uid := int64(0)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	maxUnavailable := intstr.FromString("100%")
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	deletePolicy := corev1.PersistentVolumeReclaimDelete
	ds := &appsv1.DaemonSet{
		TypeMeta:   daemonSetType,
		ObjectMeta: metav1.ObjectMeta{Name: LocalPathName, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            LocalPathName,
						Image:           version.Image(),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"kubeforge", "component", LocalPathName, "--root=" + root},
						Env: append([]corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
						}, apiServerEnv(c)...),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("20Mi")},
						},
						// Root, to make and delete the directories; of
						// root's capabilities only what deleting files
						// that pods of other users wrote takes.
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &falseV,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"},
								Add: []corev1.Capability{"DAC_OVERRIDE", "FOWNER"}},
							ReadOnlyRootFilesystem: &trueV,
							RunAsUser:              &uid,
							SeccompProfile:         &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "volumes", MountPath: root}},
					}},
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					PriorityClassName:  "system-node-critical",
					ServiceAccountName: LocalPathName,
					// Every node that runs pods may be chosen for a claim.
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: ptr(int64(5)),
					Volumes: []corev1.Volume{{Name: "volumes", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: root, Type: &dirOrCreate}}}},
				},
			},
		},
	}
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: LocalPathName, Namespace: ns}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: metav1.ObjectMeta{Name: LocalPathName, Namespace: ns, Labels: labels}},
		clusterRole("system:kubeforge:"+LocalPathName,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}),
		clusterRoleBinding("system:kubeforge:"+LocalPathName, "system:kubeforge:"+LocalPathName, sa),
		&storagev1.StorageClass{TypeMeta: metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass"},
			ObjectMeta: metav1.ObjectMeta{Name: LocalPathClass, Labels: labels,
				Annotations: map[string]string{annDefaultClass: "true"}},
			Provisioner:       LocalPathProvisioner,
			ReclaimPolicy:     &deletePolicy,
			VolumeBindingMode: &wffc,
		},
		ds,
	}
}

// LocalPathRoot is the configured volume root (the default when unset).
func LocalPathRoot(c *config.Config) string {
	if r := c.Kubeforge.Addons.LocalPath.Root; r != "" {
		return filepath.Clean(r)
	}
	return config.DefaultLocalPathRoot
}
