package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Load reads a kubeadm-style config file (several YAML documents) into a
// new Config. Nothing is defaulted or validated yet: call Complete.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	c := New()
	c.Source = file
	if err := c.Decode(data); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode reads the YAML documents in data into c, strictly: an unknown or
// duplicate field, a wrong type, an unknown kind all fail with the file,
// the document and the field path.
func (c *Config) Decode(data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	seen := map[string]int{}
	var errs []error
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", c.sourceName(), n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: not valid YAML: %w", c.sourceName(), n, err))
			continue
		}
		if tm.Kind == "" || tm.APIVersion == "" {
			errs = append(errs, fmt.Errorf("%s: document %d: missing apiVersion or kind", c.sourceName(), n))
			continue
		}
		var target any
		switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
		case KubeadmAPIVersion + "/InitConfiguration":
			target = &c.Init
		case KubeadmAPIVersion + "/ClusterConfiguration":
			target = &c.Cluster
		case KubeadmAPIVersion + "/JoinConfiguration":
			target = &c.Join
		case KubeletAPIVersion + "/KubeletConfiguration":
			target = &c.Kubelet
		case KubeProxyAPIVersion + "/KubeProxyConfiguration":
			target = &c.KubeProxy
		case KubeforgeAPIVersion + "/KubeforgeConfiguration":
			target = &c.Kubeforge
		default:
			if strings.HasPrefix(tm.APIVersion, "kubeadm.k8s.io/") && tm.APIVersion != KubeadmAPIVersion {
				errs = append(errs, fmt.Errorf("%s: document %d: apiVersion %q is not supported: kubeforge reads %s (convert the file with `kubeadm config migrate`)",
					c.sourceName(), n, tm.APIVersion, KubeadmAPIVersion))
			} else {
				errs = append(errs, fmt.Errorf("%s: document %d: unknown kind %q (apiVersion %q); expected InitConfiguration, ClusterConfiguration or JoinConfiguration (%s), KubeletConfiguration (%s), KubeProxyConfiguration (%s) or KubeforgeConfiguration (%s)",
					c.sourceName(), n, tm.Kind, tm.APIVersion, KubeadmAPIVersion, KubeletAPIVersion, KubeProxyAPIVersion, KubeforgeAPIVersion))
			}
			continue
		}
		if prev, dup := seen[tm.Kind]; dup {
			errs = append(errs, fmt.Errorf("%s: document %d: a second %s (the first is document %d)", c.sourceName(), n, tm.Kind, prev))
			continue
		}
		seen[tm.Kind] = n
		if target == &c.Kubelet {
			var keys map[string]any
			_ = yaml.Unmarshal(doc, &keys)
			c.kubeletKeys = map[string]bool{}
			for k := range keys {
				c.kubeletKeys[k] = true
			}
		}
		if err := decodeStrict(doc, target); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d (%s): %w", c.sourceName(), n, tm.Kind, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) sourceName() string {
	if c.Source == "" {
		return "config"
	}
	return c.Source
}

// decodeStrict converts one YAML document to JSON and decodes it, reporting
// every unknown or duplicate field with its path and any type mismatch.
func decodeStrict(doc []byte, into any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	strict, err := kjson.UnmarshalStrict(js, into)
	if err != nil {
		return cleanJSONError(err)
	}
	if len(strict) > 0 {
		var errs []error
		for _, e := range strict {
			errs = append(errs, errors.New(strings.TrimPrefix(e.Error(), "json: ")))
		}
		return errors.Join(errs...)
	}
	return nil
}

// cleanJSONError turns encoding/json's type errors into "field PATH: …".
func cleanJSONError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	// "cannot unmarshal string into Go struct field ClusterConfiguration.networking.podSubnet of type int"
	if i := strings.Index(msg, "Go struct field "); i >= 0 {
		rest := msg[i+len("Go struct field "):]
		field, typ, _ := strings.Cut(rest, " of type ")
		if j := strings.Index(field, "."); j >= 0 {
			field = field[j+1:]
		}
		what := strings.TrimSuffix(strings.TrimPrefix(msg[:i], "cannot unmarshal "), " into ")
		return fmt.Errorf("field %s: wrong type: got %s, want %s", field, what, typ)
	}
	return errors.New(msg)
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
