package uploadcerts

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fuzzKey is a fixed certificate key (the fuzz inputs do not know it).
var fuzzKey = bytes.Repeat([]byte{0x5a}, 32)

// FuzzDecrypt feeds arbitrary ciphertexts and keys to decrypt, as a joining
// control-plane node reads the kubeadm-certs Secret with its
// --certificate-key: anything but a real encryption under the key fails;
// encryption round-trips; the key parser takes exactly 64 hex digits.
func FuzzDecrypt(f *testing.F) {
	// Sealed as encrypt does but with a fixed nonce: every fuzz worker
	// process must have the same valid ciphertext.
	block, err := aes.NewCipher(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		f.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{7}, gcm.NonceSize())
	enc := gcm.Seal(nonce, nonce, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), nil)
	if _, err := decrypt(enc, fuzzKey); err != nil {
		f.Fatal(err)
	}
	f.Add(enc, fuzzKey, []byte("plain"), strings.Repeat("5a", 32))
	f.Add([]byte{}, fuzzKey, []byte{}, "")
	f.Add(enc[:11], fuzzKey, []byte("x"), strings.Repeat("5A", 32))
	f.Add(enc[:12], fuzzKey[:16], []byte("x"), strings.Repeat("0", 63))
	f.Add(append(append([]byte{}, enc[:len(enc)-1]...), enc[len(enc)-1]^1), fuzzKey[:31], []byte("x"), "zz"+strings.Repeat("0", 62))
	f.Fuzz(func(t *testing.T, data, key, plain []byte, hexKey string) {
		// Garbage never decrypts under the fixed key (forging AES-GCM's tag
		// is not something a fuzzer does), whatever its length.
		if out, err := decrypt(data, fuzzKey); err == nil && !bytes.Equal(data, enc) {
			t.Fatalf("garbage %x decrypted to %q", data, out)
		}
		// Any key: no panic; a key AES refuses is an error.
		if _, err := decrypt(data, key); err == nil && len(key) != 16 && len(key) != 24 && len(key) != 32 {
			t.Fatalf("decrypt with a %d-byte key succeeded", len(key))
		}
		k, err := ParseKey(hexKey)
		if err != nil {
			if len(hexKey) == 64 && strings.Trim(strings.ToLower(hexKey), "0123456789abcdef") == "" {
				t.Fatalf("ParseKey refused %q: %v", hexKey, err)
			}
			return
		}
		if len(k) != 32 {
			t.Fatalf("ParseKey(%q) gave %d bytes", hexKey, len(k))
		}
		c, err := encrypt(plain, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decrypt(c, k)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip: %q %v", got, err)
		}
		if !bytes.Equal(k, fuzzKey) {
			if _, err := decrypt(c, fuzzKey); err == nil {
				t.Fatal("decrypted with another key")
			}
		}
	})
}

// FuzzFetch feeds an arbitrary kubeadm-certs Secret (one file's ciphertext
// fuzzed, the others real) to Fetch: it fails with its wrong-key message,
// or returns every file, decrypted (an external CA's CA key may be absent).
func FuzzFetch(f *testing.F) {
	f.Add("ca.key", []byte("garbage"), false)
	f.Add("encryption-config.yaml", []byte{}, true)
	f.Add("etcd/ca.crt", []byte{0, 1, 2}, true)
	f.Add("sa.pub", make([]byte, 40), false)
	f.Add("ca.key", []byte{}, true)
	f.Fuzz(func(t *testing.T, file string, ciphertext []byte, drop bool) {
		data := map[string][]byte{}
		for _, f := range Files {
			enc, err := encrypt([]byte("content of "+f), fuzzKey)
			if err != nil {
				t.Fatal(err)
			}
			data[secretKey(f)] = enc
		}
		if drop {
			delete(data, secretKey(file))
		} else {
			data[secretKey(file)] = ciphertext
		}
		c := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: metav1.NamespaceSystem}, Data: data})
		files, err := Fetch(context.Background(), c, fuzzKey)
		known, optional := false, false
		for _, f := range Files {
			if secretKey(f) == secretKey(file) {
				known = true
				optional = drop && externalCAKey(f)
			}
		}
		if !known || optional {
			// An extra key: ignored. A CA key left out: an external CA
			// keeps it (the upload of such a cluster has none).
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
		} else if err == nil {
			t.Fatalf("fetch accepted a damaged or missing %q", file)
		} else if !strings.Contains(err.Error(), "certificate key does not decrypt") && !strings.Contains(err.Error(), "lacks") {
			t.Fatalf("unhelpful error: %v", err)
		}
		if err != nil {
			return
		}
		for _, f := range Files {
			b, ok := files[f]
			if !ok && optional && secretKey(f) == secretKey(file) {
				continue
			}
			if string(b) != "content of "+f {
				t.Fatalf("%s: %q", f, b)
			}
		}
		if len(files) > len(Files) {
			t.Fatalf("fetch returned files it does not know: %v", files)
		}
	})
}
