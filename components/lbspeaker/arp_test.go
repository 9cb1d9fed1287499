package lbspeaker

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// A request built here parses back field by field; the reply to it is
// addressed to the asker and carries the announced address with this
// interface's hardware address; non-ARP and short frames are ignored.
func TestARPFrames(t *testing.T) {
	asker := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	me := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	src, vip := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.240")
	req := buildARP(opRequest, asker, bcast, src, zero, vip)
	p, ok := parseARP(req)
	if !ok || p.op != opRequest || !bytes.Equal(p.senderHW, asker) || p.senderIP != src || p.targetIP != vip {
		t.Fatalf("request parsed as %+v, %v", p, ok)
	}
	if !bytes.Equal(req[0:6], bcast) || !bytes.Equal(req[6:12], asker) {
		t.Errorf("request's Ethernet header: % x", req[:14])
	}
	reply := buildARP(opReply, me, p.senderHW, p.targetIP, p.senderHW, p.senderIP)
	r, ok := parseARP(reply)
	if !ok || r.op != opReply || !bytes.Equal(r.senderHW, me) || r.senderIP != vip || !bytes.Equal(r.targetHW, asker) || r.targetIP != src {
		t.Fatalf("reply parsed as %+v, %v", r, ok)
	}
	if !bytes.Equal(reply[0:6], asker) {
		t.Errorf("the reply goes to % x, want the asker", reply[0:6])
	}
	garp := buildARP(opRequest, me, bcast, vip, zero, vip)
	if g, ok := parseARP(garp); !ok || g.senderIP != vip || g.targetIP != vip || !bytes.Equal(g.senderHW, me) {
		t.Errorf("gratuitous ARP parsed as %+v, %v", g, ok)
	}
	ip := append([]byte(nil), req...)
	ip[12], ip[13] = 0x08, 0x00 // IPv4, not ARP
	for name, f := range map[string][]byte{"short": req[:30], "not ARP": ip} {
		if _, ok := parseARP(f); ok {
			t.Errorf("%s frame parsed", name)
		}
	}
}
