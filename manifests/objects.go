package manifests

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"

	"github.com/kubeforge/kubeforge/config"
)

// Names of the objects kubeadm defines and kubeforge keeps.
const (
	KubeadmConfigMap       = "kubeadm-config"
	KubeletConfigMap       = "kubelet-config"
	ClusterInfoConfigMap   = "cluster-info"
	NodeBootstrapGroup     = "system:bootstrappers:kubeadm:default-node-token"
	ClusterAdminsGroup     = "kubeadm:cluster-admins"
	ClusterAdminsBinding   = "kubeadm:cluster-admins"
	KubeletServingApprover = "kubeforge:kubelet-serving-approver"
	// NodeDirectory is the ConfigMap kube-system/kubeforge-nodes: what the
	// node-service duties need to know of every Node (internal/nodedir),
	// published by the controller-manager, so that nodes need not list and
	// watch all Nodes.
	NodeDirectory          = "kubeforge-nodes"
	NodeDirectoryReader    = "kubeforge:node-directory-reader"
	NodeDirectoryPublisher = "kubeforge:node-directory-publisher"
	// LBPoolReader lets the nodes read the cloud config ConfigMap
	// (CloudControllerConfigMap): the LoadBalancer speaker in every node
	// service announces only addresses of its pool.
	LBPoolReader = "kubeforge:lb-pool-reader"
	// PodNetworkReader is the ClusterRole (and ClusterRoleBinding) that
	// let every node list and watch all Nodes before the node directory:
	// `upgrade apply` deletes them once no node runs an older agent.
	PodNetworkReader = "kubeforge:pod-network-reader"
)

var (
	configMapType = metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}
	rbacGV        = rbacv1.SchemeGroupVersion.String()
)

func role(ns, name string, rules ...rbacv1.PolicyRule) *rbacv1.Role {
	return &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: rbacGV, Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules}
}

func roleBinding(ns, name string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacGV, Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subjects}
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: rbacGV, Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
}

func clusterRoleBinding(name, roleName string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacGV, Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roleName}, Subjects: subjects}
}

func group(name string) rbacv1.Subject { return rbacv1.Subject{Kind: rbacv1.GroupKind, Name: name} }
func user(name string) rbacv1.Subject  { return rbacv1.Subject{Kind: rbacv1.UserKind, Name: name} }

func getNamed(resource, name string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{resource}, ResourceNames: []string{name}, Verbs: []string{"get"}}
}

// ClusterAdminsBindingObject binds admin.conf's group to cluster-admin. It
// must exist before admin.conf can do anything, so init creates it first,
// with super-admin.conf.
func ClusterAdminsBindingObject() *rbacv1.ClusterRoleBinding {
	return clusterRoleBinding(ClusterAdminsBinding, "cluster-admin", group(ClusterAdminsGroup))
}

// UploadConfigObjects are the kubeadm-config and kubelet-config ConfigMaps
// and the Roles that let nodes (and joining nodes) read them.
func UploadConfigObjects(c *config.Config) ([]runtime.Object, error) {
	cluster, err := c.ClusterConfigurationYAML()
	if err != nil {
		return nil, fmt.Errorf("render ClusterConfiguration: %w", err)
	}
	kubelet, err := c.KubeletConfigurationYAML()
	if err != nil {
		return nil, fmt.Errorf("render KubeletConfiguration: %w", err)
	}
	ns := metav1.NamespaceSystem
	readers := []rbacv1.Subject{group(NodeBootstrapGroup), group("system:nodes")}
	return []runtime.Object{
		&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: KubeadmConfigMap, Namespace: ns},
			Data: map[string]string{"ClusterConfiguration": string(cluster)}},
		role(ns, "kubeadm:nodes-kubeadm-config", getNamed("configmaps", KubeadmConfigMap)),
		roleBinding(ns, "kubeadm:nodes-kubeadm-config", readers...),
		&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: KubeletConfigMap, Namespace: ns},
			Data: map[string]string{"kubelet": string(kubelet)}},
		role(ns, "kubeadm:kubelet-config", getNamed("configmaps", KubeletConfigMap)),
		roleBinding(ns, "kubeadm:kubelet-config", readers...),
	}, nil
}

// BootstrapRBAC is kubeadm's RBAC for node bootstrap (get nodes, post CSRs,
// automatic approval of node client certificates and their rotation, the
// apiserver's access to the kubelet API, anonymous read of cluster-info),
// plus the permission kubeforge's kubelet-serving CSR approver (running in
// the controller-manager) needs, the nodes' read of the LoadBalancer
// address pool (LBPoolReader), and NodeDirectoryRBAC.
func BootstrapRBAC() []runtime.Object {
	return append([]runtime.Object{
		clusterRole("kubeadm:get-nodes", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}),
		clusterRoleBinding("kubeadm:get-nodes", "kubeadm:get-nodes", group(NodeBootstrapGroup)),
		clusterRoleBinding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", group(NodeBootstrapGroup)),
		clusterRoleBinding("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", group(NodeBootstrapGroup)),
		clusterRoleBinding("kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", group("system:nodes")),
		clusterRoleBinding("kubeadm:apiserver-kubelet-client", "system:kubelet-api-admin", user("kube-apiserver-kubelet-client")),
		role(metav1.NamespacePublic, "kubeadm:bootstrap-signer-clusterinfo", getNamed("configmaps", ClusterInfoConfigMap)),
		roleBinding(metav1.NamespacePublic, "kubeadm:bootstrap-signer-clusterinfo", user("system:anonymous")),
		clusterRole(KubeletServingApprover,
			rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{"kubernetes.io/kubelet-serving"}, Verbs: []string{"approve"}},
			// It compares a request with every Node's names and addresses.
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}),
		clusterRoleBinding(KubeletServingApprover, KubeletServingApprover, user("system:kube-controller-manager")),
		role(metav1.NamespaceSystem, LBPoolReader, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{CloudControllerConfigMap}, Verbs: []string{"get", "list", "watch"}}),
		roleBinding(metav1.NamespaceSystem, LBPoolReader, group("system:nodes")),
	}, NodeDirectoryRBAC()...)
}

// NodeDirectoryRBAC lets the nodes read the node directory (ConfigMap
// kube-system/kubeforge-nodes) and nothing else of kube-system's
// ConfigMaps, and the controller-manager (where the publisher runs, as
// system:kube-controller-manager) create it and write it. Nodes read only
// their own Node (the Node authorizer); the pod network agent and the
// LoadBalancer speaker learn the other nodes from the directory. list and
// watch with resourceNames work for a client that selects the object with
// fieldSelector metadata.name=kubeforge-nodes, as their informers do.
// create cannot be limited to a name; the controller-manager already
// creates Secrets and ServiceAccounts everywhere.
func NodeDirectoryRBAC() []runtime.Object {
	ns := metav1.NamespaceSystem
	cm := func(verbs ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{NodeDirectory}, Verbs: verbs}
	}
	return []runtime.Object{
		role(ns, NodeDirectoryReader, cm("get", "list", "watch")),
		roleBinding(ns, NodeDirectoryReader, group("system:nodes")),
		role(ns, NodeDirectoryPublisher,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
			cm("get", "list", "watch", "update", "patch")),
		roleBinding(ns, NodeDirectoryPublisher, user("system:kube-controller-manager")),
	}
}

// ClusterInfo is the kube-public/cluster-info ConfigMap: a kubeconfig with
// only the cluster's CA and endpoint, readable anonymously by joining nodes.
// signatures maps token IDs to their detached JWS (key jws-kubeconfig-<id>).
func ClusterInfo(caPEM []byte, server string, signatures map[string]string) (*corev1.ConfigMap, error) {
	data, err := ClusterInfoKubeconfig(caPEM, server)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{TypeMeta: configMapType,
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoConfigMap, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{"kubeconfig": string(data)}}
	for id, sig := range signatures {
		cm.Data["jws-kubeconfig-"+id] = sig
	}
	return cm, nil
}

// ClusterInfoKubeconfig renders cluster-info's kubeconfig exactly as
// kubeadm does (the JWS signatures cover these bytes).
func ClusterInfoKubeconfig(caPEM []byte, server string) ([]byte, error) {
	kc := &clientcmdapi.Config{Clusters: map[string]*clientcmdapi.Cluster{"": {Server: server, CertificateAuthorityData: caPEM}}}
	b, err := runtime.Encode(clientcmdlatest.Codec, kc)
	if err != nil {
		return nil, fmt.Errorf("render cluster-info: %w", err)
	}
	return b, nil
}
