package encryption

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteConfigFileKeepsRetiredKeys: every key that leaves the file is
// kept, once, in RetiredKeysFile (mode 0600).
func TestWriteConfigFileKeepsRetiredKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "encryption-config.yaml")
	key := func(name string) Provider {
		return Provider{Type: Secretbox, Name: name, Secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	}
	for _, c := range []Config{
		{Providers: []Provider{key("a")}},
		{Providers: []Provider{key("b"), key("a")}},
		{Providers: []Provider{key("b")}},
		{Providers: []Provider{key("c"), key("b")}},
		{Providers: []Provider{key("c")}},
		{Providers: []Provider{key("c")}},
	} {
		if _, err := WriteConfigFile(file, Render(c)); err != nil {
			t.Fatal(err)
		}
	}
	archive := RetiredKeysFile(file)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := Parse(data, archive)
	if err != nil || !slices.Equal(kept.KeyNames(), []string{"a", "b"}) {
		t.Errorf("kept %v (%v), want a and b", kept.KeyNames(), err)
	}
	if st, _ := os.Stat(archive); st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v", archive, st.Mode())
	}
}

func TestKeyOfValue(t *testing.T) {
	for _, tc := range []struct{ v, typ, name string }{
		{"k8s:enc:secretbox:v1:key-1:\x00\x01", Secretbox, "key-1"},
		{"k8s:enc:aescbc:v1:k:data", AESCBC, "k"},
		{"k8s\x00\x0a", "", ""},
		{"k8s:enc:", "", ""},
		{"", "", ""},
	} {
		typ, name, ok := KeyOfValue([]byte(tc.v))
		if typ != tc.typ || name != tc.name || ok != (tc.typ != "") {
			t.Errorf("%q: %q %q %v", tc.v, typ, name, ok)
		}
	}
}

// A configuration kubeforge cannot read (KMS, edited by hand) is kept
// whole beside the file before it is replaced: it may hold keys.
func TestWriteConfigFileKeepsAnUnreadableOne(t *testing.T) {
	file := filepath.Join(t.TempDir(), "encryption-config.yaml")
	odd := []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, configmaps]\n  providers:\n  - identity: {}\n")
	if err := os.WriteFile(file, odd, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteConfigFile(file, Render(Config{Providers: []Provider{{Type: Secretbox, Name: "a", Secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}})); err != nil {
		t.Fatal(err)
	}
	kept, _ := filepath.Glob(file + ".replaced-*")
	if len(kept) != 1 {
		t.Fatalf("kept copies %v, want one", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, odd) {
		t.Errorf("kept %q", b)
	}
}
