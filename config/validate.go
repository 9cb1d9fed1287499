package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/internal/kubeletflags"
	"github.com/kubeforge/kubeforge/internal/version"
)

// checkUnsupported refuses kubeadm settings kubeforge cannot honour, naming
// each one, instead of silently ignoring it; settings that are harmless but
// have no effect become warnings.
func (c *Config) checkUnsupported() error {
	var errs []error
	bad := func(path, why string) {
		errs = append(errs, fmt.Errorf("%s: not supported by kubeforge: %s", c.where(path), why))
	}
	if c.Init.Patches != nil {
		bad("InitConfiguration.patches", "kubeforge renders its manifests itself; remove the field and pass component flags with extraArgs")
	}
	if c.Join.Patches != nil {
		bad("JoinConfiguration.patches", "remove the field and pass component flags with extraArgs")
	}
	cl := &c.Cluster
	if cl.Etcd.External != nil {
		bad("ClusterConfiguration.etcd.external", "kubeforge runs etcd itself (etcd.local); remove etcd.external")
	}
	if l := cl.Etcd.Local; l != nil && (l.ImageRepository != "" || l.ImageTag != "") {
		bad("ClusterConfiguration.etcd.local.imageRepository/imageTag", "etcd "+version.Etcd+" is built into kubeforge; remove the image fields")
	}
	if cl.DNS.ImageRepository != "" || cl.DNS.ImageTag != "" {
		bad("ClusterConfiguration.dns.imageRepository/imageTag", "CoreDNS "+version.CoreDNS+" is built into kubeforge; remove the image fields")
	}
	switch cl.ImageRepository {
	case "", DefaultImageRepo, version.ImageRepository:
	default:
		bad("ClusterConfiguration.imageRepository", fmt.Sprintf("%q: kubeforge pulls no images (every component is built in); remove the field", cl.ImageRepository))
	}
	if v := cl.KubernetesVersion; v != "" {
		want := strings.TrimPrefix(version.Kubernetes, "v")
		got := strings.TrimPrefix(v, "v")
		minor := want[:strings.LastIndex(want, ".")]
		switch {
		case got == want:
		case got == "stable" || got == "latest" || got == "stable-1" || got == "latest-1" ||
			got == "stable-"+minor || got == "latest-"+minor || got == minor || strings.HasPrefix(got, minor+"."):
			// kubeadm's labels and placeholder (`config print init-defaults`
			// prints x.y.0) and other patches of the bundled minor.
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %q: kubeforge runs the Kubernetes it bundles, %s",
				c.where("ClusterConfiguration.kubernetesVersion"), v, version.Kubernetes))
		default:
			bad("ClusterConfiguration.kubernetesVersion", fmt.Sprintf("%q: this kubeforge bundles Kubernetes %s; remove the field or set it to %s (another minor version comes with another kubeforge binary: see `kubeforge upgrade plan`)", v, version.Kubernetes, version.Kubernetes))
		}
	}
	for _, name := range sortedKeys(cl.FeatureGates) {
		bad("ClusterConfiguration.featureGates."+name, "kubeadm feature gates do not apply to kubeforge; remove it (component feature gates go in extraArgs)")
	}
	if p := c.Init.NodeRegistration.ImagePullPolicy; p != "" {
		c.Warnings = append(c.Warnings, c.where("InitConfiguration.nodeRegistration.imagePullPolicy")+": has no effect, kubeforge's images are built in and never pulled")
	}
	return errors.Join(errs...)
}

// Validate checks every value, collecting all problems.
func (c *Config) Validate(h HostFacts) error {
	var errs []error
	add := func(path string, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.where(path), fmt.Sprintf(format, a...)))
	}
	for _, err := range validateKubeforge(&c.Kubeforge) {
		errs = append(errs, fmt.Errorf("%s: %w", c.sourceName(), err))
	}
	nr := c.Init.NodeRegistration
	for _, m := range validation.IsDNS1123Subdomain(nr.Name) {
		add("InitConfiguration.nodeRegistration.name", "%q is not a valid node name: %s", nr.Name, m)
	}
	validateKubeletExtraArgs("InitConfiguration.nodeRegistration", nr, add)
	ep := c.Init.LocalAPIEndpoint
	if ip := net.ParseIP(ep.AdvertiseAddress); ip == nil {
		add("InitConfiguration.localAPIEndpoint.advertiseAddress", "%q is not an IP address", ep.AdvertiseAddress)
	} else if ip.IsUnspecified() || ip.IsMulticast() {
		add("InitConfiguration.localAPIEndpoint.advertiseAddress", "%q cannot be advertised: give the node's own unicast address", ep.AdvertiseAddress)
	}
	if ep.BindPort < 1 || ep.BindPort > 65535 {
		add("InitConfiguration.localAPIEndpoint.bindPort", "%d is not a port (1-65535)", ep.BindPort)
	}
	if cpe := c.Cluster.ControlPlaneEndpoint; cpe != "" {
		if _, err := ParseEndpoint(cpe); err != nil {
			add("ClusterConfiguration.controlPlaneEndpoint", "%v", err)
		}
	}
	n := c.Cluster.Networking
	svc, err := parseCIDRs(n.ServiceSubnet)
	if err != nil {
		add("ClusterConfiguration.networking.serviceSubnet", "%q: %v", n.ServiceSubnet, err)
	}
	for _, p := range svc {
		if hostBits := p.Addr().BitLen() - p.Bits(); hostBits > 20 {
			add("ClusterConfiguration.networking.serviceSubnet", "%q is too large: at most 2^20 addresses (a /%d or smaller for this family)", p, p.Addr().BitLen()-20)
		} else if hostBits < 4 {
			add("ClusterConfiguration.networking.serviceSubnet", "%q is too small: the DNS service takes its tenth address", p)
		}
	}
	pods, err := parseCIDRs(n.PodSubnet)
	if err != nil {
		add("ClusterConfiguration.networking.podSubnet", "%q: %v", n.PodSubnet, err)
	}
	for _, p := range pods {
		if p.Addr().Is4() && p.Bits() > 24 {
			add("ClusterConfiguration.networking.podSubnet", "%q is too small: each node takes a /24 of it", p)
		}
		for _, s := range svc {
			if p.Overlaps(s) {
				add("ClusterConfiguration.networking.podSubnet", "%q overlaps the service subnet %q", p, s)
			}
		}
	}
	for _, m := range validation.IsDNS1123Subdomain(n.DNSDomain) {
		add("ClusterConfiguration.networking.dnsDomain", "%q: %s", n.DNSDomain, m)
	}
	for i, s := range c.Cluster.APIServer.CertSANs {
		if err := validateSAN(s); err != nil {
			add(fmt.Sprintf("ClusterConfiguration.apiServer.certSANs[%d]", i), "%q: %v", s, err)
		}
	}
	if l := c.Cluster.Etcd.Local; l != nil {
		for i, s := range l.ServerCertSANs {
			if err := validateSAN(s); err != nil {
				add(fmt.Sprintf("ClusterConfiguration.etcd.local.serverCertSANs[%d]", i), "%q: %v", s, err)
			}
		}
		for i, s := range l.PeerCertSANs {
			if err := validateSAN(s); err != nil {
				add(fmt.Sprintf("ClusterConfiguration.etcd.local.peerCertSANs[%d]", i), "%q: %v", s, err)
			}
		}
		if err := CheckOwnedDir(l.DataDir, DefaultPaths().EtcdDataDir); err != nil {
			add("ClusterConfiguration.etcd.local.dataDir", "%v", err)
		}
		for i, a := range l.ExtraArgs {
			if a.Name == "data-dir" {
				if err := CheckOwnedDir(a.Value, DefaultPaths().EtcdDataDir); err != nil {
					add(fmt.Sprintf("ClusterConfiguration.etcd.local.extraArgs[%d].value", i), "%v", err)
				}
			}
		}
		c.validateComponent("ClusterConfiguration.etcd.local", v1beta4.ControlPlaneComponent{ExtraArgs: l.ExtraArgs}, add)
	}
	if err := CheckOwnedDir(c.Cluster.CertificatesDir, DefaultPaths().CertDir); err != nil {
		add("ClusterConfiguration.certificatesDir", "%v", err)
	}
	switch c.Cluster.EncryptionAlgorithm {
	case v1beta4.EncryptionAlgorithmRSA2048, v1beta4.EncryptionAlgorithmRSA3072, v1beta4.EncryptionAlgorithmRSA4096,
		v1beta4.EncryptionAlgorithmECDSAP256, v1beta4.EncryptionAlgorithmECDSAP384:
	default:
		add("ClusterConfiguration.encryptionAlgorithm", "%q: use RSA-2048, RSA-3072, RSA-4096, ECDSA-P256 or ECDSA-P384", c.Cluster.EncryptionAlgorithm)
	}
	if c.CAValidity() <= 0 {
		add("ClusterConfiguration.caCertificateValidityPeriod", "%s must be positive", c.CAValidity())
	}
	if c.CertValidity() <= 0 {
		add("ClusterConfiguration.certificateValidityPeriod", "%s must be positive", c.CertValidity())
	} else if c.CertValidity() > c.CAValidity() {
		add("ClusterConfiguration.certificateValidityPeriod", "%s is longer than the CA's validity %s", c.CertValidity(), c.CAValidity())
	}
	for _, m := range validation.IsDNS1123Subdomain(c.Cluster.ClusterName) {
		add("ClusterConfiguration.clusterName", "%q: %s", c.Cluster.ClusterName, m)
	}
	c.validateComponent("ClusterConfiguration.apiServer", c.Cluster.APIServer.ControlPlaneComponent, add)
	c.validateComponent("ClusterConfiguration.controllerManager", c.Cluster.ControllerManager, add)
	c.validateComponent("ClusterConfiguration.scheduler", c.Cluster.Scheduler, add)
	for i, t := range c.Init.BootstrapTokens {
		path := fmt.Sprintf("InitConfiguration.bootstrapTokens[%d]", i)
		if t.TTL != nil && t.TTL.Duration < 0 {
			add(path+".ttl", "%s must not be negative", t.TTL.Duration)
		}
		if t.TTL != nil && t.TTL.Duration == 0 && t.Expires == nil {
			add(path+".ttl", "0 makes a token that never expires: give a finite ttl (the default is 24h), or make a non-expiring token after init with `kubeforge token create --ttl 0 --allow-non-expiring`")
		}
		for _, u := range t.Usages {
			if u != "signing" && u != "authentication" {
				add(path+".usages", "%q: usages are signing and authentication", u)
			}
		}
		for _, g := range t.Groups {
			if !strings.HasPrefix(g, "system:bootstrappers:") {
				add(path+".groups", "%q: extra groups must start with system:bootstrappers:", g)
			}
		}
	}
	if k := c.Init.CertificateKey; k != "" {
		if b, err := hex.DecodeString(k); err != nil || len(b) != 32 {
			add("InitConfiguration.certificateKey", "must be 64 hexadecimal characters (32 bytes), as `kubeforge certs certificate-key` prints")
		}
	}
	if c.Kubelet.CgroupDriver == "systemd" && !h.SystemdInit {
		add("KubeletConfiguration.cgroupDriver", "\"systemd\" needs systemd as init (PID 1); use cgroupfs or remove the field")
	}
	if c.Kubelet.FailCgroupV1 != nil && *c.Kubelet.FailCgroupV1 && h.CgroupV1 {
		add("KubeletConfiguration.failCgroupV1", "true, but this host uses cgroup v1: the kubelet would refuse to start; remove the field")
	}
	if c.Kubelet.StaticPodPath != c.Paths.ManifestsDir {
		add("KubeletConfiguration.staticPodPath", "%q: kubeforge writes the control plane's manifests to %s; remove the field", c.Kubelet.StaticPodPath, c.Paths.ManifestsDir)
	}
	return errors.Join(errs...)
}

// validateKubeletExtraArgs checks nodeRegistration.kubeletExtraArgs (path
// is the nodeRegistration's) for what the kubelet flags file carries to
// the kubelet unchanged, under systemd too (see internal/kubeletflags:
// blanks, quotes and backslashes are quoted there; text that is not UTF-8
// and control characters cannot be). A hostname-override must be the
// node's name: kubeforge names the node's certificates, etcd member and
// taints after nodeRegistration.name, and the flags file has one
// --hostname-override.
func validateKubeletExtraArgs(path string, nr v1beta4.NodeRegistrationOptions, add func(string, string, ...any)) {
	for i, a := range nr.KubeletExtraArgs {
		p := fmt.Sprintf("%s.kubeletExtraArgs[%d]", path, i)
		if err := kubeletflags.CheckName(a.Name); err != nil {
			add(p+".name", "%v", err)
		}
		if err := kubeletflags.CheckValue(a.Value); err != nil {
			add(p+".value", "%s: %v", a.Name, err)
		} else if kubeletflags.Normalize(a.Name) == "hostname-override" && a.Value != nr.Name {
			add(p+".value", "hostname-override %q is not the node's name %q: set the name with %s.name (or --node-name) instead, which kubeforge also names the node's certificates after", a.Value, nr.Name, path)
		}
	}
}

func (c *Config) validateComponent(path string, cp v1beta4.ControlPlaneComponent, add func(string, string, ...any)) {
	for i, a := range cp.ExtraArgs {
		if a.Name == "" || strings.HasPrefix(a.Name, "-") {
			add(fmt.Sprintf("%s.extraArgs[%d].name", path, i), "%q: give the flag name without dashes", a.Name)
		}
		if path == "ClusterConfiguration.scheduler" {
			if err := CheckSchedulerFileArg(a.Name, a.Value); err != nil {
				add(fmt.Sprintf("%s.extraArgs[%d].value", path, i), "%s=%q: %v", a.Name, a.Value, err)
			}
		}
	}
	for i, v := range cp.ExtraVolumes {
		p := fmt.Sprintf("%s.extraVolumes[%d]", path, i)
		if v.Name == "" {
			add(p+".name", "must be set")
		}
		if !filepath.IsAbs(v.HostPath) {
			add(p+".hostPath", "%q must be an absolute path", v.HostPath)
		}
		if !filepath.IsAbs(v.MountPath) {
			add(p+".mountPath", "%q must be an absolute path", v.MountPath)
		}
		if c.Kubeforge.ControlPlane.Processes() && filepath.Clean(v.HostPath) != filepath.Clean(v.MountPath) {
			add(p+".mountPath", "%q: with %s.controlPlane.runtime %s the component sees the host's paths where they are: set mountPath to %q",
				v.MountPath, KubeforgeKind, ControlPlaneProcesses, v.HostPath)
		}
	}
	for i, e := range cp.ExtraEnvs {
		if e.Name == "" {
			add(fmt.Sprintf("%s.extraEnvs[%d].name", path, i), "must be set")
		}
	}
}

// CheckSchedulerFileArg checks the value of a scheduler extraArg that
// kubeforge moves into the scheduler's configuration file (the scheduler
// would have parsed it as a flag): kube-api-qps a number, kube-api-burst
// an integer, profiling and contention-profiling true or false. Other
// names are not checked.
func CheckSchedulerFileArg(name, value string) error {
	var err error
	switch name {
	case "kube-api-qps":
		_, err = strconv.ParseFloat(value, 32)
	case "kube-api-burst":
		_, err = strconv.ParseInt(value, 0, 32)
	case "profiling", "contention-profiling":
		_, err = strconv.ParseBool(value)
	}
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			err = ne.Err
		}
		return fmt.Errorf("not a valid value for --%s (%v)", name, err)
	}
	return nil
}

// parseCIDRs parses one CIDR or a dual-stack pair "v4,v6".
func parseCIDRs(s string) ([]netip.Prefix, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, errors.New("at most two CIDRs (one IPv4, one IPv6)")
	}
	var out []netip.Prefix
	for _, part := range parts {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q", strings.TrimSpace(part))
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has host bits set; did you mean %s?", part, p.Masked())
		}
		out = append(out, p)
	}
	if len(out) == 2 && out[0].Addr().Is4() == out[1].Addr().Is4() {
		return nil, errors.New("two CIDRs must be of different IP families")
	}
	return out, nil
}

func validateSAN(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(strings.TrimPrefix(s, "*.")); len(msgs) > 0 {
		return fmt.Errorf("not an IP address or DNS name: %s", msgs[0])
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// systemDirs are directories of the operating system or of other programs:
// a configured directory kubeforge owns (reset deletes what is in it) must
// be none of them. Below /proc, /sys, /dev and /boot nothing is kubeforge's
// (systemPrefixes), nor is a directory right in /usr or /home.
var systemDirs = map[string]bool{
	"/bin": true, "/boot": true, "/dev": true, "/etc": true, "/home": true, "/lib": true, "/lib32": true,
	"/lib64": true, "/libx32": true, "/lost+found": true, "/media": true, "/mnt": true, "/opt": true,
	"/proc": true, "/root": true, "/run": true, "/sbin": true, "/snap": true, "/srv": true, "/sys": true,
	"/tmp": true, "/usr": true, "/var": true,

	"/etc/cni": true, "/etc/containerd": true, "/etc/default": true, "/etc/docker": true, "/etc/pki": true,
	"/etc/ssh": true, "/etc/ssl": true, "/etc/sysconfig": true, "/etc/systemd": true,
	"/run/containerd": true, "/run/lock": true, "/run/systemd": true, "/run/user": true,
	"/var/backups": true, "/var/cache": true, "/var/lib": true, "/var/local": true, "/var/lock": true,
	"/var/log": true, "/var/mail": true, "/var/opt": true, "/var/run": true, "/var/spool": true, "/var/tmp": true,
	"/var/lib/apt": true, "/var/lib/cni": true, "/var/lib/containerd": true, "/var/lib/docker": true,
	"/var/lib/dpkg": true, "/var/lib/rpm": true, "/var/lib/systemd": true,
	"/usr/local/bin": true, "/usr/local/etc": true, "/usr/local/lib": true, "/usr/local/sbin": true,
	"/usr/local/share": true,
}

var systemPrefixes = []string{"/proc", "/sys", "/dev", "/boot"}

// CheckOwnedDir is the one check of a configured directory that kubeforge
// owns: init fills it and `kubeforge reset` deletes everything in it
// (certificatesDir, etcd's data directory). It refuses what reset must not
// empty: a relative path, one with "..", the root directory and system
// directories (/etc, /var, /var/lib, /usr/…, /root, a home directory).
// example is the field's usual value, for the fix; callers name the field
// or flag in front of the error.
func CheckOwnedDir(dir, example string) error {
	fix := "kubeforge reset deletes everything in this directory: give one that only kubeforge uses, such as " + example
	switch {
	case dir == "":
		return fmt.Errorf("no directory given; %s", fix)
	case !filepath.IsAbs(dir):
		return fmt.Errorf("%q must be an absolute path; %s", dir, fix)
	case slices.Contains(strings.Split(dir, "/"), ".."):
		return fmt.Errorf("%q must not contain \"..\": give the directory itself, such as %s", dir, example)
	}
	clean := filepath.Clean(dir)
	parent := filepath.Dir(clean)
	switch {
	case clean == "/":
		return fmt.Errorf("%q is the root directory; %s", dir, fix)
	case systemDirs[clean]:
		return fmt.Errorf("%q is a system directory; %s", dir, fix)
	case parent == "/usr" || parent == "/home":
		return fmt.Errorf("%q is a system or home directory; %s", dir, fix)
	}
	for _, p := range systemPrefixes {
		if strings.HasPrefix(clean, p+"/") {
			return fmt.Errorf("%q is inside %s, which is not kubeforge's; %s", dir, p, fix)
		}
	}
	return nil
}
