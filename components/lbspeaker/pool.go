package lbspeaker

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/internal/lbpool"
	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

// poolWhere names the ConfigMap that holds the address pool.
var poolWhere = metav1.NamespaceSystem + "/" + manifests.CloudControllerConfigMap

// poolWatcher follows the cloud controller's address pool, in its cloud
// config ConfigMap (the nodes may read that one: manifests.LBPoolReader).
// A speaker announces only addresses of the pool: whoever may write a
// Service's status and annotations must not make a node answer ARP for
// any address of the node network (a gateway, another host).
type poolWatcher struct{ *nodedir.ConfigMapWatcher }

func newPoolWatcher(client kubernetes.Interface, onChange func()) (poolWatcher, error) {
	w, err := nodedir.NewConfigMapWatcher(client, metav1.NamespaceSystem, manifests.CloudControllerConfigMap,
		"the address pool", manifests.LBPoolReader, onChange)
	return poolWatcher{w}, err
}

// Pool is the address pool: empty when the cloud config does not exist
// (the cloud controller is off: it gives no pool addresses). The error
// says why the pool is unknown.
func (w poolWatcher) Pool() (lbpool.Pool, error) {
	cm, err := w.Get()
	if err != nil || cm == nil {
		return nil, err
	}
	return manifests.CloudConfigPool(cm)
}
