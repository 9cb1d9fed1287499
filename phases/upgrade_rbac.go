package phases

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/manifests"
)

// runUpgradeRBAC applies this version's bootstrap RBAC (what init's
// bootstrap-token phase creates), so that RBAC a version adds reaches
// clusters made by an older one: the node directory's Roles, which the new
// controller-manager (publisher) and the new node agents (readers) need.
// It runs before the control plane is replaced and on every apply (the
// RBAC is the cluster's, not this node's). The system shim group's
// admission policy goes with it: the new static pods ask for that group.
func runUpgradeRBAC(ctx context.Context, d *UpgradeData) error {
	return d.applier().Apply(ctx, "upgrade/rbac", append(manifests.BootstrapRBAC(), manifests.ShimGroupPolicy()...)...)
}

// runUpgradeRBACCleanup deletes the RBAC that older versions needed and
// this one does not: the ClusterRole and ClusterRoleBinding
// kubeforge:pod-network-reader, which let every node list and watch all
// Nodes. Nodes still on an older kubeforge run agents that list Nodes, so
// the role stays until none lags (the apply after their `upgrade node`).
func runUpgradeRBACCleanup(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/rbac"
	name := manifests.PodNetworkReader
	rbac := d.Client.RbacV1()
	_, errRole := rbac.ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	_, errBinding := rbac.ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
	for _, err := range []error{errRole, errBinding} {
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read ClusterRole/ClusterRoleBinding %s: %w", name, err)
		}
	}
	if apierrors.IsNotFound(errRole) && apierrors.IsNotFound(errBinding) {
		d.Out.Printf(phase, "No ClusterRole %s: nodes read only their own Node and the node directory (ConfigMap kube-system/%s)", name, manifests.NodeDirectory)
		return nil
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would delete ClusterRoleBinding and ClusterRole %s (every node may list all Nodes) once no node runs an older kubeforge", name)
		return nil
	}
	lagging, err := d.laggingNodes(ctx)
	if err != nil {
		return err
	}
	if len(lagging) > 0 {
		d.Out.Printf(phase, "Keeping ClusterRole %s (every node may list all Nodes): node(s) %s still run an older kubeforge whose pod network agent and LoadBalancer speaker list Nodes. Run `kubeforge upgrade node` on them, then `kubeforge upgrade apply` here again to delete it",
			name, strings.Join(lagging, ", "))
		return nil
	}
	if err := rbac.ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete ClusterRoleBinding %s: %w", name, err)
	}
	if err := rbac.ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete ClusterRole %s: %w", name, err)
	}
	d.Out.Printf(phase, "Deleted ClusterRoleBinding and ClusterRole %s: nodes no longer list all Nodes, they read the node directory (ConfigMap kube-system/%s)", name, manifests.NodeDirectory)
	return nil
}
