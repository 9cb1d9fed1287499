// Package localpath is kubeforge's local-path storage provisioner: each
// PersistentVolumeClaim of the local-path StorageClass gets a directory
// under a root directory on the node that runs the claim's pod (the
// scheduler's selected-node annotation, the class being
// WaitForFirstConsumer), as a `local` PersistentVolume pinned to that node
// by nodeAffinity. It is built on the Kubernetes SIG Storage provisioner
// library (sigs.k8s.io/sig-storage-lib-external-provisioner), whose
// controller does the claim and volume bookkeeping, events, retries and
// reclaim policy; this package only creates and deletes directories.
//
// One provisioner runs on every node (a DaemonSet with the root mounted
// from the host) and serves only the claims whose selected node is its
// own, and deletes only the volumes pinned to its own node: the
// directories are made and removed by the process that sees them, with no
// helper pods (so the provisioner needs no right to create pods).
package localpath

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Annotations the provisioner reads and writes.
const (
	// AnnSelectedNode is the scheduler's choice of node for a
	// WaitForFirstConsumer claim.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnNode records, on the PersistentVolume, the node holding its
	// directory (also in its nodeAffinity).
	AnnNode = "local-path.kubeforge.io/node"
	// AnnPath records the directory, as the PV's local.path does.
	AnnPath = "local-path.kubeforge.io/path"
)

// maxNameLen keeps a volume directory's name within a file name's limit.
const maxNameLen = 255

// Provisioner makes and removes volume directories under Root on Node.
type Provisioner struct {
	// Node is the name of the node this provisioner runs on.
	Node string
	// Hostname is the node's kubernetes.io/hostname label, which the
	// volumes' nodeAffinity matches (the node name when empty).
	Hostname string
	// Root is the volume root as the node sees it (what PVs name).
	Root string
	// HostRoot is where this process finds Root (the pod's mount of it);
	// empty means Root itself.
	HostRoot string
}

var (
	_ controller.Provisioner   = (*Provisioner)(nil)
	_ controller.Qualifier     = (*Provisioner)(nil)
	_ controller.DeletionGuard = (*Provisioner)(nil)
)

// sanitize turns a name into a safe piece of a directory name: only
// lower-case letters, digits, '.' and '-' are kept, anything else
// (a '/', a NUL, an upper-case letter…) becomes '-', and a piece made of
// dots only is refused, so no piece can name a parent directory.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
		default:
			b[i] = '-'
		}
	}
	out := string(b)
	if strings.Trim(out, ".") == "" {
		out = strings.Repeat("-", len(out))
	}
	return out
}

// VolumeDir is the directory of the volume pvName for the claim
// namespace/claim: root/<pvName>_<namespace>_<claim>, every piece
// sanitized. It is always a direct child of root (checked, not assumed).
func VolumeDir(root, pvName, namespace, claim string) (string, error) {
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("volume root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	pv := sanitize(pvName)
	if pv == "" {
		return "", errors.New("empty volume name")
	}
	name := pv + "_" + sanitize(namespace) + "_" + sanitize(claim)
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	dir := filepath.Join(root, name)
	if err := checkInRoot(root, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkInRoot refuses a path that is not a direct child of root.
func checkInRoot(root, dir string) error {
	root = filepath.Clean(root)
	if filepath.Dir(filepath.Clean(dir)) != root || filepath.Clean(dir) != dir || filepath.Base(dir) == ".." || filepath.Base(dir) == "." {
		return fmt.Errorf("%q is not a directory right inside the volume root %s", dir, root)
	}
	return nil
}

// CheckClaim refuses what a node-local directory cannot be: a volume
// shared by pods on several nodes (ReadWriteMany, ReadOnlyMany), or a raw
// block device. ReadWriteOnce and ReadWriteOncePod are served.
func CheckClaim(pvc *corev1.PersistentVolumeClaim) error {
	for _, m := range pvc.Spec.AccessModes {
		switch m {
		case corev1.ReadWriteOnce, corev1.ReadWriteOncePod:
		default:
			return fmt.Errorf("claim %s/%s asks for access mode %s: a local-path volume is a directory on one node, so only ReadWriteOnce and ReadWriteOncePod are supported; use one of them, or another StorageClass for shared volumes",
				pvc.Namespace, pvc.Name, m)
		}
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return fmt.Errorf("claim %s/%s asks for volumeMode Block: a local-path volume is a directory (volumeMode Filesystem); drop volumeMode or set it to Filesystem", pvc.Namespace, pvc.Name)
	}
	if pvc.Spec.Selector != nil {
		return fmt.Errorf("claim %s/%s has a selector: the local-path provisioner cannot satisfy label selectors on dynamically provisioned volumes; remove spec.selector", pvc.Namespace, pvc.Name)
	}
	return nil
}

// PV is the PersistentVolume for a claim provisioned in dir on node: a
// `local` volume (the kubelet checks the directory exists rather than
// silently making an empty one) pinned by nodeAffinity to the node whose
// kubernetes.io/hostname label is hostname, with the class's reclaim
// policy (Delete when the class sets none) and mount options.
func PV(opts controller.ProvisionOptions, node, hostname, dir string) *corev1.PersistentVolume {
	if hostname == "" {
		hostname = node
	}
	policy := corev1.PersistentVolumeReclaimDelete
	var mountOptions []string
	if opts.StorageClass != nil {
		if opts.StorageClass.ReclaimPolicy != nil {
			policy = *opts.StorageClass.ReclaimPolicy
		}
		mountOptions = opts.StorageClass.MountOptions
	}
	fs := corev1.PersistentVolumeFilesystem
	capacity := resource.Quantity{}
	if q, ok := opts.PVC.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		capacity = q
	}
	modes := opts.PVC.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        opts.PVName,
			Annotations: map[string]string{AnnNode: node, AnnPath: dir},
		},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: policy,
			AccessModes:                   modes,
			VolumeMode:                    &fs,
			MountOptions:                  mountOptions,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: dir},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}
}

// ShouldProvision takes the claims whose pod the scheduler put on this
// node; the provisioners of the other nodes leave them alone.
func (p *Provisioner) ShouldProvision(_ context.Context, pvc *corev1.PersistentVolumeClaim) bool {
	return pvc.Annotations[AnnSelectedNode] == p.Node
}

// Provision makes the claim's directory (mode 0777, so that a pod running
// as any user can write in it) and returns its PersistentVolume.
func (p *Provisioner) Provision(_ context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("claim %s/%s has no selected node: the local-path StorageClass must have volumeBindingMode WaitForFirstConsumer", opts.PVC.Namespace, opts.PVC.Name)
	}
	if opts.SelectedNodeName != p.Node {
		return nil, controller.ProvisioningFinished, &controller.IgnoredError{Reason: fmt.Sprintf("the claim's node is %s, this provisioner serves %s", opts.SelectedNodeName, p.Node)}
	}
	if err := CheckClaim(opts.PVC); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	dir, err := VolumeDir(p.Root, opts.PVName, opts.PVC.Namespace, opts.PVC.Name)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	local := p.local(dir)
	if err := os.Mkdir(local, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, controller.ProvisioningFinished, fmt.Errorf("make the volume directory %s on node %s: %w", dir, p.Node, err)
	}
	st, err := os.Lstat(local)
	if err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("volume directory %s on node %s: %w", dir, p.Node, err)
	}
	if !st.IsDir() {
		return nil, controller.ProvisioningFinished, fmt.Errorf("volume directory %s on node %s exists and is not a directory: remove it", dir, p.Node)
	}
	if err := os.Chmod(local, 0o777); err != nil { // the umask took bits off
		return nil, controller.ProvisioningFinished, fmt.Errorf("volume directory %s on node %s: %w", dir, p.Node, err)
	}
	return PV(opts, p.Node, p.Hostname, dir), controller.ProvisioningFinished, nil
}

// ShouldDelete takes the volumes whose directory is on this node.
func (p *Provisioner) ShouldDelete(_ context.Context, pv *corev1.PersistentVolume) bool {
	return pv.Annotations[AnnNode] == p.Node
}

// Delete removes the volume's directory and everything in it, after
// checking that it is a directory right inside the root: a volume whose
// path points anywhere else is refused (a hand-made PV naming this
// provisioner cannot make it delete /etc).
func (p *Provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Annotations[AnnNode] != p.Node {
		return &controller.IgnoredError{Reason: fmt.Sprintf("volume %s is on node %q, this provisioner serves %s", pv.Name, pv.Annotations[AnnNode], p.Node)}
	}
	if pv.Spec.Local == nil {
		return fmt.Errorf("volume %s is not a local volume: refusing to delete anything for it", pv.Name)
	}
	dir := pv.Spec.Local.Path
	if err := checkInRoot(p.Root, dir); err != nil {
		return fmt.Errorf("volume %s: refusing to delete: %w", pv.Name, err)
	}
	if a := pv.Annotations[AnnPath]; a != dir {
		return fmt.Errorf("volume %s: refusing to delete: its path %s differs from the one it was provisioned with (%s)", pv.Name, dir, a)
	}
	// RemoveAll does not follow symbolic links: a link inside the volume
	// (or the volume itself, were it one) is removed, not its target.
	if err := os.RemoveAll(p.local(dir)); err != nil {
		return fmt.Errorf("remove the volume directory %s of %s on node %s: %w", dir, pv.Name, p.Node, err)
	}
	return nil
}

// local is where this process finds the directory dir under Root.
func (p *Provisioner) local(dir string) string {
	if p.HostRoot == "" {
		return dir
	}
	return filepath.Join(p.HostRoot, strings.TrimPrefix(dir, filepath.Clean(p.Root)))
}
