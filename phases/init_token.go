// The bootstrap-token and show-join-command phases of init.

package phases

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

func runBootstrapToken(ctx context.Context, d *InitData) error {
	const phase = "bootstrap-token"
	a, err := d.applier()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert("ca.crt")))
	if err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	kubeconfig, err := manifests.ClusterInfoKubeconfig(caPEM, d.Cfg.ControlPlaneEndpoint())
	if err != nil {
		return err
	}
	var objs []runtime.Object
	signatures := map[string]string{}
	for i := range d.Cfg.Init.BootstrapTokens {
		t := &d.Cfg.Init.BootstrapTokens[i]
		if t.Token == nil {
			s, err := bootstraputil.GenerateBootstrapToken()
			if err != nil {
				return err
			}
			if t.Token, err = bootstraptokenv1.NewBootstrapTokenString(s); err != nil {
				return err
			}
		}
		if !d.SkipTokenPrint {
			d.Out.Printf(phase, "Using token: %s", t.Token)
		}
		secret := bootstraptokenv1.BootstrapTokenToSecret(t)
		secret.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
		objs = append(objs, secret)
		if slices.Contains(t.Usages, "signing") {
			// Sign cluster-info now instead of waiting ~6 s for the
			// controller-manager's bootstrap signer: a node can join at once.
			sig, err := jws.ComputeDetachedSignature(string(kubeconfig), t.Token.ID, t.Token.Secret)
			if err != nil {
				return fmt.Errorf("sign cluster-info: %w", err)
			}
			signatures[t.Token.ID] = sig
		}
	}
	objs = append(objs, manifests.BootstrapRBAC()...)
	objs = append(objs, manifests.ShimGroupPolicy()...)
	ci, err := manifests.ClusterInfo(caPEM, d.Cfg.ControlPlaneEndpoint(), signatures)
	if err != nil {
		return err
	}
	objs = append(objs, ci)
	return a.Apply(ctx, phase, objs...)
}

func runShowJoinCommand(_ context.Context, d *InitData) error {
	caCert, err := pki.LoadCert(d.Paths, "ca")
	if err != nil {
		return err
	}
	token := "<token>"
	if len(d.Cfg.Init.BootstrapTokens) > 0 && d.Cfg.Init.BootstrapTokens[0].Token != nil && !d.SkipTokenPrint {
		token = d.Cfg.Init.BootstrapTokens[0].Token.String()
	}
	endpoint := strings.TrimPrefix(d.Cfg.ControlPlaneEndpoint(), "https://")
	join := fmt.Sprintf("kubeforge join %s --token %s \\\n\t--discovery-token-ca-cert-hash %s", endpoint, token, pki.CAHash(caCert))
	cpJoin := ""
	if d.UploadCerts && d.CertificateKey != "" {
		cpJoin = fmt.Sprintf("\nJoin control-plane nodes (within 2 hours; `kubeforge init phase upload-certs --upload-certs` makes a new key) by running on each:\n\n  %s \\\n\t--control-plane --certificate-key %s\n", join, d.CertificateKey)
	}
	admin := d.Cfg.Paths.Kubeconfig("admin.conf")
	msg := fmt.Sprintf(`Your Kubernetes control plane is up.

To use it as root:

  export KUBECONFIG=%s
  kubectl get nodes

or as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i %s $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Join worker nodes by running on each, as root:

  %s
%s`, admin, admin, join, cpJoin)
	if d.Out.JSON() {
		d.Out.Emit(progress.Event{Phase: "show-join-command", Action: "join-command", Message: strings.ReplaceAll(join, "\\\n\t", "")})
		return nil
	}
	d.Out.Emit(progress.Event{Phase: "", Message: "\n" + strings.TrimRight(msg, "\n")})
	return nil
}
