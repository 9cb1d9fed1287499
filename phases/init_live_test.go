package phases

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// fakeAPI is one API server behind three clients, as init sees it: the
// typed and dynamic admin.conf clients and super-admin.conf's dynamic one.
// The dynamic fakes answer from the typed clientset's field-managed
// tracker, which implements server-side apply (the plain dynamic fake's
// tracker applies only to objects that exist), so whatever one client
// writes the others read.
type fakeAPI struct {
	client            *fake.Clientset
	admin, superAdmin *dynamicfake.FakeDynamicClient
}

func newFakeAPI(objs ...runtime.Object) *fakeAPI {
	f := &fakeAPI{client: fake.NewClientset(objs...)}
	dyn := func() *dynamicfake.FakeDynamicClient {
		// The typed scheme, so the fake converts the tracker's typed
		// objects to unstructured ones.
		d := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(clientgoscheme.Scheme, nil)
		d.PrependReactor("*", "*", k8stesting.ObjectReaction(f.client.Tracker()))
		return d
	}
	f.admin, f.superAdmin = dyn(), dyn()
	// RBAC as the API server has it: admin.conf (group
	// kubeadm:cluster-admins) may write once its binding exists.
	f.client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		_, err := f.client.Tracker().Get(rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"), "", manifests.ClusterAdminsBinding)
		r.Status.Allowed = err == nil
		return true, r, nil
	})
	return f
}

func (f *fakeAPI) configMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := f.client.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ConfigMap %s/%s: %v", ns, name, err)
	}
	return cm
}

// writes lists the resources c wrote (created, updated, patched or applied).
func writes(c *dynamicfake.FakeDynamicClient) []string {
	var out []string
	for _, a := range c.Actions() {
		if slices.Contains([]string{"create", "update", "patch"}, a.GetVerb()) && !slices.Contains(out, a.GetResource().Resource) {
			out = append(out, a.GetResource().Resource)
		}
	}
	return out
}

var liveHost = config.HostFacts{Hostname: "n1", CgroupV1: true,
	DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}

// liveInit is init's data as `kubeforge init --root-dir` builds it (the
// flags given), with api's clients given instead of admin.conf's.
func liveInit(t *testing.T, api *fakeAPI, f config.InitFlags) (*InitData, *bytes.Buffer) {
	t.Helper()
	f.NodeName, f.RootDir = "n1", t.TempDir()
	changed := func(flag string) bool { return flag == "node-name" }
	cfg, err := config.LoadInit(f, changed, liveHost)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := NewNode(cfg, progress.New(&buf, false), false, liveHost)
	if err != nil {
		t.Fatal(err)
	}
	d := &InitData{Node: n}
	if api != nil {
		d.Client, d.Dynamic, d.SuperAdmin = api.client, api.admin, api.superAdmin
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, &buf
}

func runInitPhases(t *testing.T, d *InitData, names ...string) {
	t.Helper()
	w := InitWorkflow()
	for _, name := range names {
		if err := w.RunPhase(context.Background(), d, name, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// allows reports whether rules let verb act on the core resource named name.
func allows(rules []rbacv1.PolicyRule, verb, resource, name string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

// roleAllows checks that the Role and RoleBinding named role in ns let
// subject verb the core resource name.
func roleAllows(t *testing.T, api *fakeAPI, ns, role string, subject rbacv1.Subject, verb, resource, name string) {
	t.Helper()
	ctx := context.Background()
	r, err := api.client.RbacV1().Roles(ns).Get(ctx, role, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !allows(r.Rules, verb, resource, name) {
		t.Errorf("Role %s/%s does not allow %s %s %s: %+v", ns, role, verb, resource, name, r.Rules)
	}
	rb, err := api.client.RbacV1().RoleBindings(ns).Get(ctx, role, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role}) {
		t.Errorf("RoleBinding %s/%s refers to %+v", ns, role, rb.RoleRef)
	}
	if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool { return s.Kind == subject.Kind && s.Name == subject.Name }) {
		t.Errorf("RoleBinding %s/%s does not bind %s %s: %+v", ns, role, subject.Kind, subject.Name, rb.Subjects)
	}
}

// Without given clients the live phases keep refusing a root directory:
// nothing may contact what its files do not describe.
func TestInitLivePhasesNeedHostWithoutClients(t *testing.T) {
	for _, phase := range []string{"upload-config/kubeadm", "upload-config/kubelet", "mark-control-plane", "bootstrap-token"} {
		d, _ := liveInit(t, nil, config.InitFlags{})
		err := InitWorkflow().RunPhase(context.Background(), d, phase, nil)
		if err == nil || !strings.Contains(err.Error(), "phase "+phase+": ") || !strings.Contains(err.Error(), "--root-dir") {
			t.Errorf("%s under a root directory without clients: %v, want the --root-dir refusal", phase, err)
		}
	}
}

// upload-config binds admin.conf's group to cluster-admin with the
// super-admin client, then stores the ClusterConfiguration and the
// KubeletConfiguration that joining nodes read (and adopt) with the Roles
// that let them; a second run changes nothing.
func TestInitUploadConfigPhase(t *testing.T) {
	api := newFakeAPI()
	d, out := liveInit(t, api, config.InitFlags{})
	runInitPhases(t, d, "upload-config", "upload-config")

	crb, err := api.client.RbacV1().ClusterRoleBindings().Get(context.Background(), manifests.ClusterAdminsBinding, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if crb.RoleRef.Name != "cluster-admin" || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != rbacv1.GroupKind || crb.Subjects[0].Name != manifests.ClusterAdminsGroup {
		t.Errorf("%s: roleRef %+v subjects %+v", manifests.ClusterAdminsBinding, crb.RoleRef, crb.Subjects)
	}
	// admin.conf can do nothing before the binding: super-admin.conf makes it.
	if got := writes(api.superAdmin); !slices.Equal(got, []string{"clusterrolebindings"}) {
		t.Errorf("the super-admin client wrote %v, want only the cluster-admins binding", got)
	}
	if got := writes(api.admin); slices.Contains(got, "clusterrolebindings") || !slices.Contains(got, "configmaps") {
		t.Errorf("the admin client wrote %v, want the configuration and not the binding", got)
	}

	kc := api.configMap(t, metav1.NamespaceSystem, manifests.KubeadmConfigMap)
	kl := api.configMap(t, metav1.NamespaceSystem, manifests.KubeletConfigMap)
	for _, c := range []struct {
		cm       *corev1.ConfigMap
		key      string
		kind     string
		apiGroup string
	}{
		{kc, "ClusterConfiguration", "ClusterConfiguration", "kubeadm.k8s.io/"},
		{kl, "kubelet", "KubeletConfiguration", "kubelet.config.k8s.io/"},
	} {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(c.cm.Data[c.key]), &tm); err != nil || tm.Kind != c.kind || !strings.HasPrefix(tm.APIVersion, c.apiGroup) {
			t.Errorf("ConfigMap %s key %s: kind %q apiVersion %q (%v), want %s of %s*", c.cm.Name, c.key, tm.Kind, tm.APIVersion, err, c.kind, c.apiGroup)
		}
	}
	// What a joining node does with them (phases.JoinData's discovery).
	joined := config.New()
	if err := joined.AdoptCluster([]byte(kc.Data["ClusterConfiguration"]), []byte(kl.Data["kubelet"]), liveHost); err != nil {
		t.Fatalf("a joining node cannot adopt the uploaded configuration: %v", err)
	}
	joined.Cluster.TypeMeta = d.Cfg.Cluster.TypeMeta
	if !reflect.DeepEqual(joined.Cluster, d.Cfg.Cluster) {
		t.Errorf("ClusterConfiguration as a joining node reads it:\n%+v\nwant init's:\n%+v", joined.Cluster, d.Cfg.Cluster)
	}
	if got, want := joined.Kubelet.ClusterDNS, d.Cfg.Kubelet.ClusterDNS; !slices.Equal(got, want) || len(want) == 0 {
		t.Errorf("KubeletConfiguration clusterDNS %v, want %v", got, want)
	}
	if got, want := joined.Kubelet.ClusterDomain, d.Cfg.Cluster.Networking.DNSDomain; got != want {
		t.Errorf("KubeletConfiguration clusterDomain %q, want %q", got, want)
	}

	for _, subject := range []rbacv1.Subject{
		{Kind: rbacv1.GroupKind, Name: manifests.NodeBootstrapGroup},
		{Kind: rbacv1.GroupKind, Name: "system:nodes"},
	} {
		roleAllows(t, api, metav1.NamespaceSystem, "kubeadm:nodes-kubeadm-config", subject, "get", "configmaps", manifests.KubeadmConfigMap)
		roleAllows(t, api, metav1.NamespaceSystem, "kubeadm:kubelet-config", subject, "get", "configmaps", manifests.KubeletConfigMap)
	}
	if !strings.Contains(out.String(), "ConfigMap kube-system/kubeadm-config") {
		t.Errorf("progress does not name the ConfigMap:\n%s", out)
	}
}

// mark-control-plane labels the node and adds init's taints (none with
// --single-node), keeping the taints the node has, once.
func TestInitMarkControlPlanePhase(t *testing.T) {
	keep := corev1.Taint{Key: "example.com/keep", Value: "yes", Effect: corev1.TaintEffectNoExecute}
	for _, tc := range []struct {
		name       string
		singleNode bool
		want       []corev1.Taint
	}{
		{"control plane", false, []corev1.Taint{keep, config.ControlPlaneTaint}},
		{"single node", true, []corev1.Taint{keep}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}},
				Spec: corev1.NodeSpec{Taints: []corev1.Taint{keep}}})
			d, out := liveInit(t, api, config.InitFlags{SingleNode: tc.singleNode})
			runInitPhases(t, d, "mark-control-plane", "mark-control-plane")
			n, err := api.client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range []string{"node-role.kubernetes.io/control-plane", "node.kubernetes.io/exclude-from-external-load-balancers", "kubernetes.io/hostname"} {
				if _, ok := n.Labels[l]; !ok {
					t.Errorf("node labels %v lack %s", n.Labels, l)
				}
			}
			if !reflect.DeepEqual(n.Spec.Taints, tc.want) {
				t.Errorf("node taints %v, want %v", n.Spec.Taints, tc.want)
			}
			if !strings.Contains(out.String(), "Marked node n1 as control-plane") {
				t.Errorf("progress:\n%s", out)
			}
		})
	}
}

// bootstrap-token stores the token as the API server's token
// authenticator reads it, publishes cluster-info (the CA and endpoint,
// signed with the token, readable anonymously) and the RBAC that lets a
// node holding the token post its CSR and have it approved.
func TestInitBootstrapTokenPhase(t *testing.T) {
	api := newFakeAPI()
	d, out := liveInit(t, api, config.InitFlags{})
	runInitPhases(t, d, "certs/ca")
	start := time.Now().Truncate(time.Second)
	runInitPhases(t, d, "bootstrap-token")
	end := time.Now()
	ctx := context.Background()

	tok := d.Cfg.Init.BootstrapTokens[0]
	if tok.Token == nil {
		t.Fatal("no token was generated")
	}
	if !strings.Contains(out.String(), "Using token: "+tok.Token.String()) {
		t.Errorf("progress does not show the token:\n%s", out)
	}
	s, err := api.client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstrapapi.BootstrapTokenSecretPrefix+tok.Token.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != bootstrapapi.SecretTypeBootstrapToken {
		t.Errorf("token Secret type %q, want %q", s.Type, bootstrapapi.SecretTypeBootstrapToken)
	}
	for k, want := range map[string]string{
		bootstrapapi.BootstrapTokenIDKey:               tok.Token.ID,
		bootstrapapi.BootstrapTokenSecretKey:           tok.Token.Secret,
		bootstrapapi.BootstrapTokenUsageAuthentication: "true",
		bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
		bootstrapapi.BootstrapTokenExtraGroupsKey:      manifests.NodeBootstrapGroup,
	} {
		if got := string(s.Data[k]); got != want {
			t.Errorf("token Secret %s = %q, want %q", k, got, want)
		}
	}
	exp, err := time.Parse(time.RFC3339, string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]))
	if ttl := config.DefaultTokenTTL; err != nil || exp.Before(start.Add(ttl)) || exp.After(end.Add(ttl)) {
		t.Errorf("token expiration %q (%v), want %s from now", s.Data[bootstrapapi.BootstrapTokenExpirationKey], err, ttl)
	}

	ci := api.configMap(t, metav1.NamespacePublic, manifests.ClusterInfoConfigMap)
	kc, err := clientcmd.Load([]byte(ci.Data["kubeconfig"]))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert("ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	if c := kc.Clusters[""]; c == nil || c.Server != d.Cfg.ControlPlaneEndpoint() || !bytes.Equal(c.CertificateAuthorityData, caPEM) {
		t.Errorf("cluster-info's cluster %+v, want server %s and the CA", c, d.Cfg.ControlPlaneEndpoint())
	}
	// Signed at once, so a node can join before the bootstrap signer runs.
	if !jws.DetachedTokenIsValid(ci.Data[bootstrapapi.JWSSignatureKeyPrefix+tok.Token.ID], ci.Data["kubeconfig"], tok.Token.ID, tok.Token.Secret) {
		t.Error("cluster-info is not signed with the token")
	}
	roleAllows(t, api, metav1.NamespacePublic, "kubeadm:bootstrap-signer-clusterinfo", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "system:anonymous"},
		"get", "configmaps", manifests.ClusterInfoConfigMap)

	// The token's group may post CSRs and have its client CSR approved;
	// the node's rotated certificates are approved too.
	for name, want := range map[string][2]string{
		"kubeadm:kubelet-bootstrap":                     {"system:node-bootstrapper", manifests.NodeBootstrapGroup},
		"kubeadm:node-autoapprove-bootstrap":            {"system:certificates.k8s.io:certificatesigningrequests:nodeclient", manifests.NodeBootstrapGroup},
		"kubeadm:node-autoapprove-certificate-rotation": {"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
		"kubeadm:get-nodes":                             {"kubeadm:get-nodes", manifests.NodeBootstrapGroup},
	} {
		crb, err := api.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			continue
		}
		if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != want[0] ||
			!slices.ContainsFunc(crb.Subjects, func(s rbacv1.Subject) bool { return s.Kind == rbacv1.GroupKind && s.Name == want[1] }) {
			t.Errorf("ClusterRoleBinding %s: roleRef %+v subjects %+v, want ClusterRole %s for group %s", name, crb.RoleRef, crb.Subjects, want[0], want[1])
		}
	}

	// Again: the same token (now in the configuration), nothing new.
	secrets := func() int {
		l, err := api.client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	before := secrets()
	runInitPhases(t, d, "bootstrap-token")
	if after := secrets(); after != before {
		t.Errorf("a second run left %d Secrets in kube-system, the first %d", after, before)
	}
}

// upload-certs encrypts the shared files with the certificate key into
// kubeadm-certs, which a joining control plane's Fetch decrypts back to
// the files; without --upload-certs it uploads nothing.
func TestInitUploadCertsPhase(t *testing.T) {
	api := newFakeAPI()
	d, out := liveInit(t, api, config.InitFlags{})
	runInitPhases(t, d, "certs", "control-plane/apiserver", "upload-certs")
	if _, err := api.client.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), uploadcerts.SecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("without --upload-certs: %s: %v, want none", uploadcerts.SecretName, err)
	}

	d.UploadCerts = true
	for range 2 { // a second upload replaces the first
		runInitPhases(t, d, "upload-certs")
	}
	if !strings.Contains(out.String(), "Using certificate key: "+d.CertificateKey) || d.CertificateKey == "" {
		t.Errorf("no certificate key shown:\n%s", out)
	}
	s, err := api.client.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), uploadcerts.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Owned by a token, which expires it.
	if len(s.OwnerReferences) != 1 || !strings.HasPrefix(s.OwnerReferences[0].Name, bootstrapapi.BootstrapTokenSecretPrefix) {
		t.Errorf("%s owners %+v, want its token's Secret", uploadcerts.SecretName, s.OwnerReferences)
	}
	ca, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert("ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Data["ca.crt"], ca) || len(s.Data["ca.crt"]) == 0 {
		t.Error("ca.crt is stored in the clear")
	}
	key, err := uploadcerts.ParseKey(d.CertificateKey)
	if err != nil {
		t.Fatal(err)
	}
	files, err := uploadcerts.Fetch(context.Background(), api.client, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range uploadcerts.Files {
		want, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert(f)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files[f], want) {
			t.Errorf("%s decrypts to other bytes than the node's file", f)
		}
	}
	other, _ := uploadcerts.NewKey()
	otherKey, _ := uploadcerts.ParseKey(other)
	if _, err := uploadcerts.Fetch(context.Background(), api.client, otherKey); err == nil {
		t.Error("another key decrypts the upload")
	}
	roleAllows(t, api, metav1.NamespaceSystem, "kubeadm:kubeadm-certs", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: manifests.NodeBootstrapGroup},
		"get", "secrets", uploadcerts.SecretName)
}

// A write the API server refuses stops the run at that phase, and the
// error names the phase and the object (and stays a Forbidden error).
func TestInitLivePhasesForbidden(t *testing.T) {
	for _, tc := range []struct {
		phase    string
		client   func(*fakeAPI) *k8stesting.Fake
		verb     string
		resource string
		want     string
	}{
		{"upload-config/kubeadm", func(f *fakeAPI) *k8stesting.Fake { return &f.superAdmin.Fake }, "patch", "clusterrolebindings", "apply ClusterRoleBinding kubeadm:cluster-admins"},
		{"upload-config/kubeadm", func(f *fakeAPI) *k8stesting.Fake { return &f.admin.Fake }, "patch", "configmaps", "apply ConfigMap kube-system/kubeadm-config"},
		{"upload-config/kubelet", func(f *fakeAPI) *k8stesting.Fake { return &f.admin.Fake }, "patch", "configmaps", "apply ConfigMap kube-system/kubelet-config"},
		{"mark-control-plane", func(f *fakeAPI) *k8stesting.Fake { return &f.client.Fake }, "patch", "nodes", "label and taint node n1"},
		{"bootstrap-token", func(f *fakeAPI) *k8stesting.Fake { return &f.admin.Fake }, "patch", "secrets", "apply Secret kube-system/bootstrap-token-"},
		{"bootstrap-token", func(f *fakeAPI) *k8stesting.Fake { return &f.admin.Fake }, "patch", "configmaps", "apply ConfigMap kube-public/cluster-info"},
		{"upload-certs", func(f *fakeAPI) *k8stesting.Fake { return &f.client.Fake }, "create", "secrets", "upload-certs: create the owning token"},
	} {
		t.Run(tc.phase+"/"+tc.resource, func(t *testing.T) {
			api := newFakeAPI(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
			tc.client(api).PrependReactor(tc.verb, tc.resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
				name := ""
				if n, ok := a.(interface{ GetName() string }); ok {
					name = n.GetName()
				}
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: tc.resource}, name, errors.New("RBAC: access denied"))
			})
			d, _ := liveInit(t, api, config.InitFlags{})
			d.UploadCerts = true
			runInitPhases(t, d, "certs", "control-plane/apiserver")
			err := InitWorkflow().RunPhase(context.Background(), d, tc.phase, nil)
			var pe *PhaseError
			if !errors.As(err, &pe) || pe.Phase != tc.phase || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a Forbidden error of phase %s saying %q", err, tc.phase, tc.want)
			}
		})
	}
}

// TestInitStartsTheKubeletBeforeItsStaticPods: in a whole init the kubelet
// starts before the manifests are written (its start overlaps the image
// import), and the etcd and control-plane phases write them only once the
// node service has the images: without a node service they fail, naming
// the wait, and write nothing. A phase run on its own writes at once.
func TestInitStartsTheKubeletBeforeItsStaticPods(t *testing.T) {
	var order []string
	for _, p := range InitWorkflow().Phases {
		order = append(order, p.Name)
	}
	ks, etcd, cp := slices.Index(order, "kubelet-start"), slices.Index(order, "etcd"), slices.Index(order, "control-plane")
	kc := slices.Index(order, "kubelet-config")
	if kc < 0 || ks < kc || etcd < ks || cp < ks {
		t.Errorf("init's phases: %v, want kubelet-config, kubelet-start before etcd and control-plane", order)
	}

	d, _ := liveInit(t, nil, config.InitFlags{})
	runInitPhases(t, d, "certs", "kubeconfig", "kubelet-config")
	if st, err := os.Stat(d.Paths.Host(d.Cfg.Paths.ManifestsDir)); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("kubelet-config: the static pod directory: %v %v", st, err)
	}
	// kubelet.conf already names the rotating certificate when config.yaml
	// appears (a running node service starts the kubelet on that file).
	kubeletConf := d.Paths.Host(d.Cfg.Paths.Kubeconfig("kubelet.conf"))
	if b, err := os.ReadFile(kubeletConf); err != nil || strings.Contains(string(b), "client-certificate-data") ||
		!strings.Contains(string(b), pki.KubeletClientCurrent) {
		t.Errorf("kubelet-config: kubelet.conf does not use the rotating certificate %s: %v\n%s", pki.KubeletClientCurrent, err, b)
	}
	d.EarlyNodeStart = true
	for _, phase := range []string{"etcd", "control-plane"} {
		err := InitWorkflow().RunPhase(context.Background(), d, phase, nil)
		if err == nil || !strings.Contains(err.Error(), "before writing the static Pod manifests") || !strings.Contains(err.Error(), "node service is not running") {
			t.Errorf("%s in a whole init without a node service: %v", phase, err)
		}
	}
	if entries, _ := os.ReadDir(d.Paths.Host(d.Cfg.Paths.ManifestsDir)); len(entries) > 0 {
		t.Errorf("manifests written before the images were in: %v", entries)
	}
	d.EarlyNodeStart = false
	runInitPhases(t, d, "etcd", "control-plane")
	if entries, _ := os.ReadDir(d.Paths.Host(d.Cfg.Paths.ManifestsDir)); len(entries) != 4 {
		t.Errorf("phases run on their own: %d manifests, want 4", len(entries))
	}
}
