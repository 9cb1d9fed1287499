// Package encryption is kubeforge's encryption of Secrets at rest: the API
// server's EncryptionConfiguration as a list of providers, the pure
// transitions of a key rotation (add a read-only key, make it the write
// key, retire the others), the rotation state recorded in the cluster, and
// the node duty that brings each control-plane node's file to the
// published one.
//
// New clusters use secretbox (XSalsa20-Poly1305) with a random 32-byte key,
// the strong local-key provider of the Kubernetes documentation; an aesgcm
// key of an older cluster keeps decrypting until a rotation retires it.
package encryption

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// Provider types kubeforge writes or reads.
const (
	Secretbox = "secretbox"
	AESGCM    = "aesgcm"
	AESCBC    = "aescbc"
	Identity  = "identity"
)

// Provider is one key of one provider (or identity, which has no key).
// The first provider of a Config encrypts every write; all of them decrypt.
type Provider struct {
	Type   string // Secretbox, AESGCM, AESCBC or Identity
	Name   string // the key's name (empty for Identity)
	Secret string // the key, base64 (empty for Identity)
}

// Config is the encryption configuration of Secrets, in provider order.
type Config struct {
	Providers []Provider
}

// Write is the provider that encrypts writes.
func (c Config) Write() Provider {
	if len(c.Providers) == 0 {
		return Provider{Type: Identity}
	}
	return c.Providers[0]
}

// Has reports whether a key named name is in c.
func (c Config) Has(name string) bool { return c.index(name) >= 0 }

// Key returns c's key named name, if c has it.
func (c Config) Key(name string) (Provider, bool) {
	i := c.index(name)
	if i < 0 {
		return Provider{}, false
	}
	return c.Providers[i], true
}

func (c Config) index(name string) int {
	return slices.IndexFunc(c.Providers, func(p Provider) bool { return p.Type != Identity && p.Name == name })
}

// KeyNames lists the names of c's keys, in order.
func (c Config) KeyNames() []string {
	var out []string
	for _, p := range c.Providers {
		if p.Type != Identity {
			out = append(out, p.Name)
		}
	}
	return out
}

// StoragePrefix is the prefix of a value the API server encrypted with the
// key named name of provider typ in etcd ("k8s:enc:secretbox:v1:key1:").
func StoragePrefix(typ, name string) string { return "k8s:enc:" + typ + ":v1:" + name + ":" }

// NewKey makes a secretbox key with a new random 32-byte secret, named
// after the time (key names end up in every encrypted value's prefix).
func NewKey(now time.Time) (Provider, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Provider{}, fmt.Errorf("generate a secrets encryption key: %w", err)
	}
	return Provider{Type: Secretbox, Name: "key-" + now.UTC().Format("20060102T150405Z"), Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// Initial is a new cluster's configuration: key writes, identity still
// reads values stored unencrypted.
func Initial(key Provider) Config {
	return Config{Providers: []Provider{key, {Type: Identity}}}
}

// AddReadKey returns c with key added right after the write key, so every
// API server can decrypt what it will encrypt once it becomes the write
// key. Adding a key that is there changes nothing.
func AddReadKey(c Config, key Provider) Config {
	if c.Has(key.Name) {
		return c
	}
	out := slices.Clone(c.Providers)
	at := min(1, len(out))
	return Config{Providers: slices.Insert(out, at, key)}
}

// MakeWrite returns c with the key named name moved first (the write key);
// the others keep their order and still decrypt.
func MakeWrite(c Config, name string) (Config, error) {
	i := c.index(name)
	if i < 0 {
		return c, fmt.Errorf("the encryption configuration has no key %q to make the write key (keys: %s)", name, strings.Join(c.KeyNames(), ", "))
	}
	out := slices.Clone(c.Providers)
	p := out[i]
	out = slices.Delete(out, i, i+1)
	return Config{Providers: slices.Insert(out, 0, p)}, nil
}

// Retire returns c with every key but the one named name removed; identity
// stays (it reads only values stored unencrypted). The kept key must be the
// write key: retiring it would leave data nobody can read.
func Retire(c Config, name string) (Config, error) {
	if w := c.Write(); w.Type == Identity || w.Name != name {
		return c, fmt.Errorf("refusing to retire keys: %q is not the write key (the write key is %q)", name, w.Name)
	}
	var out []Provider
	for _, p := range c.Providers {
		if p.Type == Identity || p.Name == name {
			out = append(out, p)
		}
	}
	return Config{Providers: out}, nil
}

// Render writes c as an EncryptionConfiguration for the secrets resource,
// one provider entry per key. The same Config always renders the same bytes
// (the API servers report the SHA-256 of the file they loaded).
func Render(c Config) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n")
	for _, p := range c.Providers {
		if p.Type == Identity {
			b.WriteString("  - identity: {}\n")
			continue
		}
		fmt.Fprintf(&b, "  - %s:\n      keys:\n      - name: %s\n        secret: %s\n", p.Type, p.Name, p.Secret)
	}
	return []byte(b.String())
}

// Hash is what the API server reports as the hash of a loaded encryption
// configuration file (apiserver_encryption_config_controller_last_config_info).
func Hash(file []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(file)) }

// Parse reads an EncryptionConfiguration of the shape kubeforge manages:
// one resources entry for secrets alone, whose providers are secretbox,
// aesgcm, aescbc (each with keys) or identity. Anything else (KMS, other
// resources) is refused: rotate such a configuration by hand.
func Parse(data []byte, where string) (Config, error) {
	var ec apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &ec); err != nil {
		return Config{}, fmt.Errorf("%s: not an EncryptionConfiguration: %w", where, err)
	}
	if ec.Kind != "EncryptionConfiguration" || ec.APIVersion != "apiserver.config.k8s.io/v1" {
		return Config{}, fmt.Errorf("%s: kind %q apiVersion %q: want EncryptionConfiguration, apiserver.config.k8s.io/v1", where, ec.Kind, ec.APIVersion)
	}
	if len(ec.Resources) != 1 || !slices.Equal(ec.Resources[0].Resources, []string{"secrets"}) {
		return Config{}, fmt.Errorf("%s: kubeforge manages one resources entry for [secrets] alone; this file differs: rotate its keys by hand (see https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/)", where)
	}
	var c Config
	seen := map[string]bool{}
	for i, pc := range ec.Resources[0].Providers {
		var typ string
		var keys []apiserverv1.Key
		n := 0
		if pc.Secretbox != nil {
			typ, keys, n = Secretbox, pc.Secretbox.Keys, n+1
		}
		if pc.AESGCM != nil {
			typ, keys, n = AESGCM, pc.AESGCM.Keys, n+1
		}
		if pc.AESCBC != nil {
			typ, keys, n = AESCBC, pc.AESCBC.Keys, n+1
		}
		if pc.Identity != nil {
			typ, n = Identity, n+1
		}
		if pc.KMS != nil {
			return Config{}, fmt.Errorf("%s: providers[%d] is a KMS provider: kubeforge rotates local keys only; rotate KMS keys in the KMS", where, i)
		}
		if n != 1 {
			return Config{}, fmt.Errorf("%s: providers[%d]: want exactly one of secretbox, aesgcm, aescbc, identity", where, i)
		}
		if typ == Identity {
			c.Providers = append(c.Providers, Provider{Type: Identity})
			continue
		}
		if len(keys) == 0 {
			return Config{}, fmt.Errorf("%s: providers[%d] (%s) has no keys", where, i, typ)
		}
		for _, k := range keys {
			if k.Name == "" || strings.ContainsAny(k.Name, ": \n") {
				return Config{}, fmt.Errorf("%s: providers[%d] (%s): key name %q must be non-empty without ':' or spaces", where, i, typ, k.Name)
			}
			if seen[k.Name] {
				return Config{}, fmt.Errorf("%s: key name %q appears twice: each key needs its own name", where, k.Name)
			}
			seen[k.Name] = true
			raw, err := base64.StdEncoding.DecodeString(k.Secret)
			if err != nil {
				return Config{}, fmt.Errorf("%s: key %q: secret is not base64: %w", where, k.Name, err)
			}
			if want := keySizes(typ); !slices.Contains(want, len(raw)) {
				return Config{}, fmt.Errorf("%s: key %q: a %s key has %v bytes, not %d", where, k.Name, typ, want, len(raw))
			}
			c.Providers = append(c.Providers, Provider{Type: typ, Name: k.Name, Secret: k.Secret})
		}
	}
	if len(c.Providers) == 0 {
		return Config{}, fmt.Errorf("%s: no providers", where)
	}
	return c, nil
}

func keySizes(typ string) []int {
	if typ == Secretbox {
		return []int{32}
	}
	return []int{16, 24, 32}
}
