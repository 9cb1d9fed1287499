package lbpool

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    string
		wantErr string
	}{
		{in: nil, want: ""},
		{in: []string{"10.0.0.240/30"}, want: "10.0.0.240-10.0.0.243"},
		{in: []string{"10.0.0.5"}, want: "10.0.0.5"},
		{in: []string{"10.0.0.5-10.0.0.9", " 10.0.1.0/31 "}, want: "10.0.0.5-10.0.0.9,10.0.1.0-10.0.1.1"},
		{in: []string{"fd00::10-fd00::20"}, wantErr: "IPv6 addresses cannot be announced yet"},
		{in: []string{"fd00::/120"}, wantErr: "IPv6"},
		{in: []string{""}, wantErr: "[0] \"\": empty"},
		{in: []string{"10.0.0.1/24"}, wantErr: "host bits set: write 10.0.0.0/24"},
		{in: []string{"10.0.0.0/8"}, wantErr: "too large"},
		{in: []string{"10.0.0.9-10.0.0.5"}, wantErr: "ends before it starts"},
		{in: []string{"10.0.0.1-fd00::1"}, wantErr: "same family"},
		{in: []string{"nonsense"}, wantErr: "not an address, CIDR or range"},
		{in: []string{"127.0.0.1"}, wantErr: "loopback"},
		{in: []string{"10.0.0.0/30", "10.0.0.2-10.0.0.9"}, wantErr: "[1] \"10.0.0.2-10.0.0.9\" overlaps [0]"},
		{in: []string{"10.0.0.2-10.0.0.9", "10.0.0.0/24"}, wantErr: "overlaps"},
	} {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			p, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tc.want {
				t.Errorf("Parse(%q) = %s, want %s", tc.in, p, tc.want)
			}
		})
	}
}

func TestAllocate(t *testing.T) {
	p, err := Parse([]string{"10.0.0.10-10.0.0.11", "10.0.0.20"})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name       string
		key        string
		want, have netip.Addr
		used       map[netip.Addr]string
		got        string
		err        error
	}{
		{name: "first free", key: "ns/a", got: "10.0.0.10"},
		{name: "skips used", key: "ns/b", used: map[netip.Addr]string{a("10.0.0.10"): "ns/a"}, got: "10.0.0.11"},
		{name: "next range", key: "ns/c", used: map[netip.Addr]string{a("10.0.0.10"): "ns/a", a("10.0.0.11"): "ns/b"}, got: "10.0.0.20"},
		{name: "keeps its own", key: "ns/a", have: a("10.0.0.11"), used: map[netip.Addr]string{a("10.0.0.11"): "ns/a"}, got: "10.0.0.11"},
		{name: "status outside pool is replaced", key: "ns/a", have: a("10.0.9.9"), got: "10.0.0.10"},
		{name: "requested", key: "ns/a", want: a("10.0.0.20"), got: "10.0.0.20"},
		{name: "requested outside", key: "ns/a", want: a("10.0.0.99"), err: ErrNotInPool},
		{name: "requested in use", key: "ns/a", want: a("10.0.0.20"), used: map[netip.Addr]string{a("10.0.0.20"): "ns/z"}, err: ErrInUse},
		{name: "exhausted", key: "ns/d", used: map[netip.Addr]string{a("10.0.0.10"): "x/a", a("10.0.0.11"): "x/b", a("10.0.0.20"): "x/c"}, err: ErrExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Allocate(tc.key, tc.want, tc.have, tc.used)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got.String() != tc.got {
				t.Fatalf("got %v, %v; want %s", got, err, tc.got)
			}
		})
	}
}

func TestAnnouncer(t *testing.T) {
	ok := func(name string) Candidate { return Candidate{Name: name, Ready: true, Speaking: true} }
	nodes := []Candidate{ok("n1"), ok("n2"), ok("n3")}
	addrs := []netip.Addr{}
	for a, i := netip.MustParseAddr("10.0.0.1"), 0; i < 60; a, i = a.Next(), i+1 {
		addrs = append(addrs, a)
	}
	count := map[string]int{}
	for _, a := range addrs {
		w := Announcer(a, nodes)
		count[w]++
		// Deterministic, and independent of the order of the list.
		if w2 := Announcer(a, []Candidate{nodes[2], nodes[0], nodes[1]}); w2 != w {
			t.Fatalf("%s: %s in one order, %s in another", a, w, w2)
		}
		// Failover: without the winner, the address moves to another
		// eligible node; the other addresses do not move.
		var rest []Candidate
		for _, n := range nodes {
			c := n
			if n.Name == w {
				c.Speaking = false
			}
			rest = append(rest, c)
		}
		w3 := Announcer(a, rest)
		if w3 == "" || w3 == w {
			t.Fatalf("%s: after %s stopped speaking, the announcer is %q", a, w, w3)
		}
		for _, b := range addrs {
			if o := Announcer(b, nodes); o != w {
				if n := Announcer(b, rest); n != o {
					t.Fatalf("%s moved from %s to %s when %s left", b, o, n, w)
				}
			}
		}
	}
	for _, n := range nodes {
		if count[n.Name] < 5 {
			t.Errorf("node %s announces %d of %d addresses: the spread is too uneven (%v)", n.Name, count[n.Name], len(addrs), count)
		}
	}
	a := netip.MustParseAddr("10.0.0.7")
	for _, tc := range []struct {
		name  string
		nodes []Candidate
		want  string
	}{
		{"none", nil, ""},
		{"not ready", []Candidate{{Name: "n1", Speaking: true}}, ""},
		{"not speaking", []Candidate{{Name: "n1", Ready: true}}, ""},
		{"excluded", []Candidate{{Name: "n1", Ready: true, Speaking: true, Excluded: true}}, ""},
		{"deleting", []Candidate{{Name: "n1", Ready: true, Speaking: true, Deleting: true}}, ""},
		{"only eligible", []Candidate{{Name: "n1", Ready: true, Speaking: true, Excluded: true}, ok("n2")}, "n2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Announcer(a, tc.nodes); got != tc.want {
				t.Errorf("Announcer = %q, want %q", got, tc.want)
			}
		})
	}
}
