package manifests

import (
	"maps"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/internal/version"
)

// ShimGroupAnnotation is the annotation by which containerd's runc shim
// groups containers: the containers whose OCI specs carry the same value
// are served by one shim process, where containerd otherwise starts a shim
// per pod (it groups by sandbox ID). The node's containerd passes this one
// pod annotation through to the specs (pod_annotations in
// components/containerd's configuration).
const ShimGroupAnnotation = "io.containerd.runc.v2.group"

// SystemShimGroupPrefix begins the shim group of the pods kubeforge runs
// itself: the control-plane static pods and the addons' pods. Only pods in
// kube-system may use it (ShimGroupPolicy).
const SystemShimGroupPrefix = "kubeforge-system"

// SystemShimGroup is this version's system shim group. One shim serves
// every kubeforge pod of a node (some 5 MiB of memory and a shim start
// saved per pod); the version in the name makes the pods of a new version
// start a shim of the new version's executable, and the old shim exits
// with its last container.
func SystemShimGroup() string { return SystemShimGroupPrefix + "-" + version.Version }

// withShimGroup returns annotations plus the system shim group.
func withShimGroup(annotations map[string]string) map[string]string {
	out := maps.Clone(annotations)
	if out == nil {
		out = map[string]string{}
	}
	out[ShimGroupAnnotation] = SystemShimGroup()
	return out
}

// ShimGroupPolicyName names the ValidatingAdmissionPolicy (and its
// binding) that keeps shim groups to their namespace.
const ShimGroupPolicyName = "kubeforge-shim-group"

// ShimGroupPolicy refuses, outside kube-system, a pod that asks for a shim
// group other than "<its namespace>-NAME" (NAME: letters, digits, '.' and
// '_', no '-', so that the namespace is all before the last '-': with '-'
// allowed, namespace "team" could take "team-prod-x", a group of namespace
// "team-prod"), or for the system group: containerd turns the group into a socket
// path (a value like "./kubeforge-system-…" or another pod's sandbox ID
// would reach the shim of the control plane or of another namespace's
// pod), and the shim that serves the control plane serves only what the
// cluster's administrators run. Every pod subresource is covered (a
// status update or a binding can set annotations too); a value a pod
// already had is left alone, so a pod made before the policy keeps its
// status updates.
func ShimGroupPolicy() []runtime.Object {
	fail := admissionv1.Fail
	deny := []admissionv1.ValidationAction{admissionv1.Deny}
	gv := admissionv1.SchemeGroupVersion.String()
	key := "'" + ShimGroupAnnotation + "'"
	return []runtime.Object{
		&admissionv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: gv, Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: ShimGroupPolicyName},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: &fail,
				MatchConstraints: &admissionv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
						Values: []string{metav1.NamespaceSystem}}}},
					ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
						Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
						Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
							Resources: []string{"pods", "pods/*"}}}}},
				},
				Variables: []admissionv1.Variable{
					{Name: "group", Expression: `has(object.metadata.annotations) && ` + key + ` in object.metadata.annotations ? object.metadata.annotations[` + key + `] : ''`},
					{Name: "oldGroup", Expression: `oldObject != null && has(oldObject.metadata.annotations) && ` + key + ` in oldObject.metadata.annotations ? oldObject.metadata.annotations[` + key + `] : ''`},
				},
				Validations: []admissionv1.Validation{{
					Expression: `variables.group == '' || variables.group == variables.oldGroup || ` +
						`(variables.group.startsWith(request.namespace + '-') && !variables.group.startsWith('` + SystemShimGroupPrefix + `') && ` +
						`variables.group.substring(size(request.namespace) + 1).matches('^[A-Za-z0-9._]+$'))`,
					Message: "the annotation " + ShimGroupAnnotation + ` must be "<the pod's namespace>-NAME" (NAME: letters, digits, "." and "_") and not name kubeforge's system group`,
					MessageExpression: `'the annotation ` + ShimGroupAnnotation + ` (pods with the same value share a runc shim) must be "' + request.namespace + ` +
						`'-NAME" (NAME: letters, digits, "." and "_") in namespace ' + request.namespace + ', and not name kubeforge\'s system group; it is "' + variables.group + '"'`,
				}},
			},
		},
		&admissionv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: gv, Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: ShimGroupPolicyName},
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        ShimGroupPolicyName,
				ValidationActions: deny,
			},
		},
	}
}
