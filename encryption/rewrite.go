package encryption

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// RewriteSecrets updates every Secret without changing it, a page at a
// time, so the API server stores each again under its current write key
// (it skips the write of an unchanged object only when the stored value
// was read with the write key). A conflict (somebody changed the Secret
// meanwhile) is retried on the fresh object; a Secret deleted meanwhile is
// skipped. only, when set, limits the rewrite to those namespace/name keys.
func RewriteSecrets(ctx context.Context, c kubernetes.Interface, pageSize int64, only map[string]bool) (int, error) {
	n := 0
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		list, err := c.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("list Secrets (after %d rewritten): %w", n, err)
		}
		for i := range list.Items {
			s := &list.Items[i]
			if only != nil && !only[s.Namespace+"/"+s.Name] {
				continue
			}
			if err := rewriteOne(ctx, c, s); err != nil {
				return n, err
			}
			n++
		}
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}

func rewriteOne(ctx context.Context, c kubernetes.Interface, s *corev1.Secret) error {
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			fresh, err := c.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s = fresh
		}
		first = false
		_, err := c.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rewrite Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// RawSecrets reads the stored values of Secrets from etcd: each one's key
// (namespace/name) and the first bytes of its value.
type RawSecrets func(ctx context.Context) (map[string][]byte, error)

// EtcdSecrets is the RawSecrets of an etcd the API server stores under
// prefix ("/registry" by default), a page at a time.
func EtcdSecrets(c *clientv3.Client, prefix string) RawSecrets {
	return func(ctx context.Context) (map[string][]byte, error) {
		base := strings.TrimSuffix(prefix, "/") + "/secrets/"
		end := clientv3.GetPrefixRangeEnd(base)
		out := map[string][]byte{}
		from := base
		for {
			resp, err := c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(500))
			if err != nil {
				return nil, fmt.Errorf("read Secrets from etcd under %s: %w", base, err)
			}
			for _, kv := range resp.Kvs {
				v := kv.Value
				if len(v) > 80 {
					v = v[:80]
				}
				out[strings.TrimPrefix(string(kv.Key), base)] = bytes.Clone(v)
			}
			if !resp.More || len(resp.Kvs) == 0 {
				return out, nil
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
}

// NotUnder lists the Secrets (namespace/name) whose stored value does not
// start with the prefix of key (see StoragePrefix), sorted.
func NotUnder(raw map[string][]byte, key Provider) []string {
	want := []byte(StoragePrefix(key.Type, key.Name))
	var out []string
	for k, v := range raw {
		if !bytes.HasPrefix(v, want) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
