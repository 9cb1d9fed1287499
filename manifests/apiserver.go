package manifests

import (
	"fmt"
)

// AnonymousPaths are the only requests the API server serves without
// credentials: its health endpoints, and the kube-public/cluster-info
// ConfigMap that joining nodes read before they have credentials (kubeadm's
// token discovery; the object holds only the CA and the endpoint).
var AnonymousPaths = []string{
	"/livez", "/readyz", "/healthz",
	"/api/v1/namespaces/kube-public/configmaps/cluster-info",
}

// AuthenticationConfig renders the API server's AuthenticationConfiguration:
// anonymous authentication limited to AnonymousPaths. (Unlike kubeadm,
// which leaves anonymous requests on for every path.)
func AuthenticationConfig() []byte {
	s := "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nanonymous:\n  enabled: true\n  conditions:\n"
	for _, p := range AnonymousPaths {
		s += fmt.Sprintf("  - path: %s\n", p)
	}
	return []byte(s)
}

// PodSecurityExemptNamespaces are the namespaces Pod Security Admission
// leaves alone: the control plane's and the addons' own.
var PodSecurityExemptNamespaces = []string{"kube-system"}

// AdmissionConfig renders the API server's AdmissionConfiguration: Pod
// Security Admission enforces the baseline standard in every namespace but
// the exempt ones and warns and audits against the restricted one (kubeadm
// sets no default: everything is privileged). A namespace chooses otherwise
// with the pod-security.kubernetes.io/{enforce,warn,audit} labels; a whole
// cluster with apiServer.extraArgs admission-control-config-file.
func AdmissionConfig() []byte {
	s := `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: latest
      audit: restricted
      audit-version: latest
      warn: restricted
      warn-version: latest
    exemptions:
      usernames: []
      runtimeClasses: []
      namespaces:
`
	for _, ns := range PodSecurityExemptNamespaces {
		s += "      - " + ns + "\n"
	}
	return []byte(s)
}

// AuditPolicy is the API server's audit policy: metadata for everything
// that changes state or touches secrets, nothing for the high-volume reads
// and health checks.
func AuditPolicy() []byte {
	return []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: None
  nonResourceURLs:
  - /healthz*
  - /livez*
  - /readyz*
  - /version
# Interactive access to pods and nodes: exec, attach, port-forward and the
# proxies are GETs (WebSocket upgrades) that the "no reads" rule below
# would drop; they come first.
- level: Metadata
  resources:
  - group: ""
    resources:
    - pods/exec
    - pods/attach
    - pods/portforward
    - pods/proxy
    - services/proxy
    - nodes/proxy
# Secrets and credentials, read by anyone (nodes included), before the
# rule that drops the nodes' reads.
- level: Metadata
  resources:
  - group: ""
    resources:
    - secrets
    - serviceaccounts/token
  - group: authentication.k8s.io
    resources:
    - tokenreviews
- level: None
  users:
  - system:kube-proxy
  verbs:
  - watch
- level: None
  userGroups:
  - system:nodes
  verbs:
  - get
  - list
  - watch
- level: None
  resources:
  - group: coordination.k8s.io
    resources:
    - leases
  - group: ""
    resources:
    - events
- level: Metadata
  resources:
  - group: ""
    resources:
    - configmaps
- level: None
  verbs:
  - get
  - list
  - watch
- level: Metadata
`)
}
