// Command patches prepares the build of bin/kubeforge with kubeforge's few
// patches to upstream code, without forking or vendoring it (and the
// repository stays free of upstream sources).
//
// For each patched module it makes a tree of hard links to the module as
// go.mod selects it (from the module cache; instant, no copy) in which only
// the patched files are new files, and writes a go.mod for the build
// (build/go.mod: the project's go.mod plus a replace of that module by the
// tree). `make build` then builds with -modfile build/go.mod -trimpath, so
// the build cache does not depend on where the repository is checked out;
// `make unit`, `make vet` and hack/test.sh build the same way, so the tests
// run on the patched code (components/kubeapiserver/bootstraphooks tests the
// patched API server hooks). Editors and a plain `go test` use the
// unpatched go.mod.
//
// Each patch replaces one exact piece of an upstream file; when the
// upstream text is not found exactly once (a version bump changed it), the
// build stops and says which patch no longer applies.
//
//	go run ./hack/patches -o build
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// patch replaces Old by New in File of Module (the version go.mod selects).
type patch struct {
	// ID names the change (several patches can make one change): `make
	// build` stamps the IDs into the binary, and `kubeforge version` lists them.
	ID           string
	Module, File string
	Old, New     string
	Why          string
	// Upstream is the upstream issue or pull request the change follows
	// (or, when none asks for exactly this change, the closest one, said
	// so): where to look for the fix that lets the patch go. Every patch
	// has one; the build refuses a patch without it.
	Upstream string
}

var patches = []patch{
	{
		ID:     "apiserver-priority-classes-no-initial-wait",
		Module: "k8s.io/kubernetes",
		File:   "pkg/registry/scheduling/rest/storage_scheduling.go",
		Old:    "err := wait.Poll(1*time.Second, 30*time.Second, func() (done bool, err error) {",
		New:    "err := wait.PollImmediate(1*time.Second, 30*time.Second, func() (done bool, err error) {",
		Why: "the API server's bootstrap-system-priority-classes post-start hook slept 1 s before its first " +
			"attempt, and /readyz waits for it",
		Upstream: "no upstream issue for this hook's initial wait; the slow post-start hooks that gate /readyz: https://github.com/kubernetes/kubernetes/issues/97119",
	},
	{
		ID:     "apiserver-bootstrap-roles-no-initial-wait",
		Module: "k8s.io/kubernetes",
		File:   "pkg/registry/rbac/rest/storage_rbac.go",
		Old:    "err := wait.Poll(1*time.Second, 30*time.Second, func() (done bool, err error) {",
		New:    "err := wait.PollImmediate(1*time.Second, 30*time.Second, func() (done bool, err error) {",
		Why: "the API server's rbac/bootstrap-roles post-start hook slept 1 s before its first attempt, " +
			"and /readyz waits for it",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (optimize the rbac/bootstrap-roles post-start hook)",
	},
	{
		ID:     "etcd-single-member-fast-election",
		Module: "go.etcd.io/etcd/server/v3",
		File:   "etcdserver/server.go",
		Old:    "\t\ts.r.advanceTicks(ticks)\n\t\treturn\n\t}\n",
		New: "\t\ts.r.advanceTicks(ticks)\n" +
			"\t\t// kubeforge: then one tick every 10 ms until this, the only voter, leads.\n" +
			"\t\tfor i := 0; i < 4*s.Cfg.ElectionTicks && s.Leader() == types.ID(raft.None); i++ {\n" +
			"\t\t\tselect {\n\t\t\tcase <-time.After(10 * time.Millisecond):\n\t\t\tcase <-s.stopping:\n\t\t\t\treturn\n\t\t\t}\n" +
			"\t\t\ts.r.advanceTicks(1)\n\t\t}\n" +
			"\t\treturn\n\t}\n",
		Why: "a single-member etcd fast-forwards its election ticks to just short of the election timeout, " +
			"which raft randomizes over [timeout, 2*timeout): it still waited 0.1-1 s (0.55 s on average) " +
			"before electing itself, and the API server waited with it. With no other voter there is nobody " +
			"to wait for, so the remaining ticks come every 10 ms (one at a time: raft ignores an election " +
			"timeout while its bootstrap configuration is not applied yet, and starts counting again)",
		Upstream: "extends https://github.com/etcd-io/etcd/pull/9415 (a single member fast-forwards its election ticks), which still leaves the randomized remainder",
	},
	{
		ID:     "etcd-publish-retry-backoff",
		Module: "go.etcd.io/etcd/server/v3",
		File:   "etcdserver/server.go",
		Old:    "s.GoAttach(func() { s.publishV3(s.Cfg.ReqTimeout()) })",
		New:    "s.GoAttach(func() { s.publishV3(min(s.Cfg.ReqTimeout(), 250*time.Millisecond)) }) // kubeforge: retry a lost publish sooner",
		Why: "a member that just joined publishes its name and client URLs through raft before it serves clients; " +
			"its first proposal, forwarded to the leader while its peer connections come up, is lost, and was retried " +
			"only after the whole request timeout (7 s; 2 s with this patch's first version), so a joining " +
			"control-plane node's etcd, and its API server, waited that long for nothing. The publish is " +
			"idempotent: the first attempt now waits 250 ms, and each failed attempt doubles the wait up to the " +
			"request timeout (the next hunk)",
		Upstream: "https://github.com/etcd-io/etcd/issues/8977 (the publish retry waits the whole request timeout)",
	},
	{
		ID:     "etcd-publish-retry-backoff",
		Module: "go.etcd.io/etcd/server/v3",
		File:   "etcdserver/server.go",
		Old:    "\t\t\t\tzap.Duration(\"publish-timeout\", timeout),\n\t\t\t\tzap.Error(err),\n\t\t\t)\n\t\t}\n\t}\n}\n",
		New: "\t\t\t\tzap.Duration(\"publish-timeout\", timeout),\n\t\t\t\tzap.Error(err),\n\t\t\t)\n" +
			"\t\t\ttimeout = min(2*timeout, s.Cfg.ReqTimeout()) // kubeforge: back off to the request timeout\n\t\t}\n\t}\n}\n",
		Why: "after a failed publish attempt the next waits twice as long, up to etcd's own request timeout, so that " +
			"a cluster whose commits take longer than 250 ms still publishes (an attempt that timed out may still " +
			"commit; the next one then commits behind it: at most one commit's latency more than upstream's wait)",
		Upstream: "https://github.com/etcd-io/etcd/issues/8977",
	},
	// The rbac/bootstrap-roles hook reconciles ~70 ClusterRoles and ~55
	// ClusterRoleBindings one after another; each create waits for its own
	// etcd commit (~7 ms here), ~1 s in all before /readyz. These patches
	// run 8 at a time (etcd commits them together); the result is the same.
	{
		ID:       "apiserver-bootstrap-roles-parallel",
		Module:   "k8s.io/kubernetes",
		File:     "pkg/registry/rbac/rest/storage_rbac.go",
		Old:      "import (\n\t\"context\"\n\t\"fmt\"\n\t\"time\"\n",
		New:      "import (\n\t\"context\"\n\t\"fmt\"\n\t\"sync\"\n\t\"time\"\n",
		Why:      "bootstrap roles in parallel: import sync",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (its first item: more parallelism; an earlier attempt, https://github.com/kubernetes/kubernetes/pull/70320, was closed)",
	},
	{
		ID:     "apiserver-bootstrap-roles-parallel",
		Module: "k8s.io/kubernetes",
		File:   "pkg/registry/rbac/rest/storage_rbac.go",
		Old:    "\tfor _, clusterRole := range p.ClusterRoles {\n",
		New: "\tvar kfMu sync.Mutex\n\tvar kfWG sync.WaitGroup\n\tkfSem := make(chan struct{}, 8)\n" +
			"\tfor _, clusterRole := range p.ClusterRoles {\n" + kfGo,
		Why:      "bootstrap ClusterRoles in parallel",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (its first item: more parallelism; an earlier attempt, https://github.com/kubernetes/kubernetes/pull/70320, was closed)",
	},
	{
		ID:       "apiserver-bootstrap-roles-parallel",
		Module:   "k8s.io/kubernetes",
		File:     "pkg/registry/rbac/rest/storage_rbac.go",
		Old:      "rbac.GroupName, clusterRole.Name, err))\n\t\t\tfailedReconciliation = true\n\t\t}\n\t}\n",
		New:      "rbac.GroupName, clusterRole.Name, err))\n" + kfFailed + "\t\t}\n" + kfEnd,
		Why:      "bootstrap ClusterRoles in parallel: wait for them",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (its first item: more parallelism; an earlier attempt, https://github.com/kubernetes/kubernetes/pull/70320, was closed)",
	},
	{
		ID:       "apiserver-bootstrap-roles-parallel",
		Module:   "k8s.io/kubernetes",
		File:     "pkg/registry/rbac/rest/storage_rbac.go",
		Old:      "\tfor _, clusterRoleBinding := range p.ClusterRoleBindings {\n",
		New:      "\tfor _, clusterRoleBinding := range p.ClusterRoleBindings {\n" + kfGo,
		Why:      "bootstrap ClusterRoleBindings in parallel",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (its first item: more parallelism; an earlier attempt, https://github.com/kubernetes/kubernetes/pull/70320, was closed)",
	},
	{
		ID:       "apiserver-bootstrap-roles-parallel",
		Module:   "k8s.io/kubernetes",
		File:     "pkg/registry/rbac/rest/storage_rbac.go",
		Old:      "rbac.GroupName, clusterRoleBinding.Name, err))\n\t\t\tfailedReconciliation = true\n\t\t}\n\t}\n",
		New:      "rbac.GroupName, clusterRoleBinding.Name, err))\n" + kfFailed + "\t\t}\n" + kfEnd,
		Why:      "bootstrap ClusterRoleBindings in parallel: wait for them",
		Upstream: "https://github.com/kubernetes/kubernetes/issues/97119 (its first item: more parallelism; an earlier attempt, https://github.com/kubernetes/kubernetes/pull/70320, was closed)",
	},
	{
		ID:     "kubelet-volume-check-50ms",
		Module: "k8s.io/kubernetes",
		File:   "pkg/kubelet/volumemanager/volume_manager.go",
		Old:    "podAttachAndMountRetryInterval = 300 * time.Millisecond",
		New:    "podAttachAndMountRetryInterval = 50 * time.Millisecond",
		Why: "the kubelet checks whether a new pod's volumes are mounted (an in-memory check) every 300 ms; " +
			"the first check comes before the volume reconciler's pass, so every pod start waited ~300 ms",
		Upstream: "https://github.com/kubernetes/kubernetes/pull/136839 (volume manager notifications instead of polling, open as WIP; the poll became immediate in https://github.com/kubernetes/kubernetes/pull/66938)",
	},
	{
		ID:     "metrics-server-quick-second-scrape",
		Module: "sigs.k8s.io/metrics-server",
		File:   "pkg/server/server.go",
		Old:    "\tdefer ticker.Stop()\n\ts.tick(ctx, time.Now())\n",
		New: "\tdefer ticker.Stop()\n\ts.tick(ctx, time.Now())\n" +
			"\t// kubeforge: until the storage serves every node it scraped (two points of each, and so Ready),\n" +
			"\t// scrape again every second, for at most one resolution; then the resolution's ticks as before.\n" +
			"\tserved := func() bool {\n" +
			"\t\tn, ok := s.storage.(interface{ NodesServed() bool })\n" +
			"\t\treturn s.storage.Ready() && (!ok || n.NodesServed())\n\t}\n" +
			"\tfor deadline := time.Now().Add(s.resolution - time.Second); !served() && time.Now().Before(deadline); {\n" +
			"\t\tselect {\n\t\tcase <-time.After(time.Second):\n\t\t\ts.tick(ctx, time.Now())\n\t\tcase <-ctx.Done():\n\t\t\treturn\n\t\t}\n\t}\n",
		Why: "metrics-server reports Ready once its storage holds two points of a pod or a node, and scraped a second " +
			"time only a whole resolution (at least 10 s) after the first, so it was the last kube-system pod to be " +
			"Ready after init by ~10 s, and `kubectl top` waited as long. The kubelet's container stats (from the CRI) " +
			"are fresh on every scrape, so the scrape a second later makes it Ready; a node's own stats refresh with " +
			"the kubelet's housekeeping (~10 s), and the scrapes go on every second until each node has its second " +
			"point too, instead of waiting for the next resolution tick. At most one resolution of extra scrapes, " +
			"at metrics-server's start only",
		Upstream: "no upstream issue asks for early scrapes; the closest: https://github.com/kubernetes-sigs/metrics-server/pull/768 (readiness needs two stored scrapes) and https://github.com/kubernetes-sigs/metrics-server/issues/136 (scrape at start, not after a resolution)",
	},
	{
		ID:     "metrics-server-quick-second-scrape",
		Module: "sigs.k8s.io/metrics-server",
		File:   "pkg/storage/storage.go",
		Old:    "\treturn len(s.nodes.prev) != 0 || len(s.pods.prev) != 0\n}\n",
		New: "\treturn len(s.nodes.prev) != 0 || len(s.pods.prev) != 0\n}\n\n" +
			"// NodesServed (kubeforge) reports whether every node of the last scrape has two points: is served.\n" +
			"func (s *storage) NodesServed() bool {\n\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n" +
			"\treturn len(s.nodes.last) != 0 && len(s.nodes.prev) == len(s.nodes.last)\n}\n",
		Why:      "the quick scrapes at start go on until every node is served (the previous hunk)",
		Upstream: "https://github.com/kubernetes-sigs/metrics-server/pull/768",
	},
	{
		ID:     "self-signed-certs-ecdsa",
		Module: "k8s.io/client-go",
		File:   "util/cert/cert.go",
		Old:    "\t\"crypto/rsa\"\n",
		New:    "\t\"crypto/ecdsa\"\n\t\"crypto/elliptic\"\n",
		Why: "every component built into kubeforge makes its throw-away self-signed certificates at start with ECDSA P-256 " +
			"keys instead of two RSA-2048 keys (a CA and a leaf): the API server's loopback certificate (on the path to " +
			"/readyz: 0.14 s of CPU in a start-up profile, more on a busy machine, as the prime search varies), and the " +
			"serving certificates the controller-manager and the scheduler make when given none. Nothing checks these " +
			"certificates' key type; ECDSA handshakes are cheaper too",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
	{
		ID:       "self-signed-certs-ecdsa",
		Module:   "k8s.io/client-go",
		File:     "util/cert/cert.go",
		Old:      "caKey, err := rsa.GenerateKey(cryptorand.Reader, 2048)",
		New:      "caKey, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader) // kubeforge: not RSA-2048",
		Why:      "the self-signed CA's key",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
	{
		ID:       "self-signed-certs-ecdsa",
		Module:   "k8s.io/client-go",
		File:     "util/cert/cert.go",
		Old:      "priv, err := rsa.GenerateKey(cryptorand.Reader, 2048)",
		New:      "priv, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader) // kubeforge: not RSA-2048",
		Why:      "the self-signed leaf's key",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
	{
		ID:     "self-signed-certs-ecdsa",
		Module: "k8s.io/client-go",
		File:   "util/cert/cert.go",
		Old:    "\tif err := pem.Encode(&keyBuffer, &pem.Block{Type: keyutil.RSAPrivateKeyBlockType, Bytes: x509.MarshalPKCS1PrivateKey(priv)}); err != nil {\n",
		New: "\tkeyDER, err := x509.MarshalECPrivateKey(priv) // kubeforge\n\tif err != nil {\n\t\treturn nil, nil, err\n\t}\n" +
			"\tif err := pem.Encode(&keyBuffer, &pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: keyDER}); err != nil {\n",
		Why:      "the leaf's key as an EC PRIVATE KEY block",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
	{
		ID:       "self-signed-certs-ecdsa",
		Module:   "k8s.io/client-go",
		File:     "util/cert/cert.go",
		Old:      "validFrom.Add(maxAge),\n\n\t\tKeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,\n",
		New:      "validFrom.Add(maxAge),\n\n\t\tKeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, // kubeforge: no key encipherment with ECDSA\n",
		Why:      "an ECDSA key does no key encipherment (RFC 8813): the CA's usages without it",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
	{
		ID:       "self-signed-certs-ecdsa",
		Module:   "k8s.io/client-go",
		File:     "util/cert/cert.go",
		Old:      "\t\tKeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,\n\t\tExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},\n",
		New:      "\t\tKeyUsage:              x509.KeyUsageDigitalSignature, // kubeforge: no key encipherment with ECDSA\n\t\tExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},\n",
		Why:      "the leaf's usages without key encipherment",
		Upstream: "no upstream issue asks to make these certificates ECDSA; the closest: https://github.com/kubernetes/kubernetes/pull/142273 (client-go's self-signed CA and non-RSA keys) and https://github.com/kubernetes/kubeadm/issues/1535 (kubeadm's move to ECDSA)",
	},
}

// Pieces of the parallel bootstrap-roles patch: a loop body becomes a
// goroutine (at most 8 at once); failures are recorded under a mutex; the
// loop is waited for.
const (
	kfGo     = "\t\tkfWG.Add(1)\n\t\tkfSem <- struct{}{}\n\t\tgo func() {\n\t\tdefer func() { <-kfSem; kfWG.Done() }()\n"
	kfFailed = "\t\t\tkfMu.Lock()\n\t\t\tfailedReconciliation = true\n\t\t\tkfMu.Unlock()\n"
	kfEnd    = "\t\t}()\n\t}\n\tkfWG.Wait()\n"
)

func main() {
	out := flag.String("o", "build", "the directory to prepare: go.mod, go.sum and the patched module trees")
	modfile := flag.String("modfile", "go.mod", "the go.mod to patch (its go.sum is beside it, named as the go command's -modfile names it): "+
		"another module set, such as hack/build-k136.sh's build against the previous Kubernetes minor")
	list := flag.Bool("list", false, "print the IDs of the changes, comma-separated (for the binary's version stamp), and do nothing else")
	flag.Parse()
	if *list {
		var ids []string
		for _, p := range patches {
			if !slices.Contains(ids, p.ID) {
				ids = append(ids, p.ID)
			}
		}
		fmt.Println(strings.Join(ids, ","))
		return
	}
	for _, p := range patches {
		if strings.TrimSpace(p.Upstream) == "" {
			fmt.Fprintf(os.Stderr, "patches: %s (%s) names no upstream issue or pull request: set its Upstream\n", p.ID, p.File)
			os.Exit(1)
		}
	}
	if err := run(*out, *modfile); err != nil {
		fmt.Fprintln(os.Stderr, "patches:", err)
		os.Exit(1)
	}
}

func run(out, modfile string) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	byModule := map[string][]patch{}
	var modules []string
	for _, p := range patches {
		if _, ok := byModule[p.Module]; !ok {
			modules = append(modules, p.Module)
		}
		byModule[p.Module] = append(byModule[p.Module], p)
	}
	sort.Strings(modules)
	var replaces []string
	for _, m := range modules {
		tree, err := patchModule(out, modfile, m, byModule[m])
		if err != nil {
			return err
		}
		replaces = append(replaces, "-replace="+m+"="+tree)
	}
	// build/go.sum: the project's; build/go.mod: the project's plus the
	// replaces (go mod edit works on a copy, kept only if it changed).
	sum, err := os.ReadFile(strings.TrimSuffix(modfile, ".mod") + ".sum")
	if err != nil {
		return fmt.Errorf("%w (run from the repository's root)", err)
	}
	if err := writeIfChanged(filepath.Join(out, "go.sum"), sum); err != nil {
		return err
	}
	mod, err := os.ReadFile(modfile)
	if err != nil {
		return err
	}
	tmp := filepath.Join(out, "go.mod.tmp")
	defer os.Remove(tmp)
	if err := os.WriteFile(tmp, mod, 0o644); err != nil {
		return err
	}
	if o, err := exec.Command("go", append(append([]string{"mod", "edit"}, replaces...), tmp)...).CombinedOutput(); err != nil {
		return fmt.Errorf("go mod edit: %v\n%s", err, o)
	}
	if mod, err = os.ReadFile(tmp); err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(out, "go.mod"), mod)
}

// patchModule makes out/<module>@<version> (a tree of hard links to the
// module with the patched files written anew) unless it is there already
// for exactly these patches, and returns its path.
func patchModule(out, modfile, module string, ps []patch) (string, error) {
	// The version go.mod selects, downloaded if it is not in the cache yet.
	b, err := exec.Command("go", "mod", "download", "-modfile", modfile, "-json", module).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var dl struct{ Dir, Version, Error string }
	if err := json.Unmarshal(b, &dl); err != nil || dl.Error != "" || dl.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s", module, err, dl.Error)
	}
	src, version := dl.Dir, dl.Version
	patched := map[string]string{}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", src)
	for _, p := range ps {
		text, ok := patched[p.File]
		if !ok {
			b, err := os.ReadFile(filepath.Join(src, p.File))
			if err != nil {
				return "", err
			}
			text = string(b)
		}
		if n := strings.Count(text, p.Old); n != 1 {
			return "", fmt.Errorf("the patch of %s %s (%s) does not apply: %q found %d times; update hack/patches/main.go",
				module, p.File, p.Why, p.Old, n)
		}
		patched[p.File] = strings.Replace(text, p.Old, p.New, 1)
		fmt.Fprintf(h, "%s\n%s\n%s\n", p.File, p.Old, p.New)
	}
	stamp := hex.EncodeToString(h.Sum(nil))
	tree := filepath.Join(out, strings.ReplaceAll(module, "/", "_")+"@"+version)
	stampFile := filepath.Join(tree, ".kubeforge-patches")
	if b, err := os.ReadFile(stampFile); err == nil && string(b) == stamp {
		return tree, nil
	}
	if err := os.RemoveAll(tree); err != nil {
		return "", err
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(tree, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case patched[filepath.ToSlash(rel)] != "":
			return os.WriteFile(dst, []byte(patched[filepath.ToSlash(rel)]), 0o444)
		case d.Type().IsRegular():
			if err := os.Link(path, dst); err == nil {
				return nil
			}
			return copyFile(path, dst)
		default:
			return nil // the module cache holds no symlinks
		}
	})
	if err != nil {
		return "", fmt.Errorf("tree of %s: %w", module, err)
	}
	return tree, os.WriteFile(stampFile, []byte(stamp), 0o644)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o444)
}

// writeIfChanged keeps the file (and its mtime) when its content is the
// same.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
