package lbspeaker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ARP on Ethernet (RFC 826), the part a layer-2 announcer needs: answer
// requests for the addresses it announces, and announce them with
// gratuitous ARP when it takes them over.
const (
	ethHeaderLen = 14
	arpLen       = 28
	opRequest    = 1
	opReply      = 2
)

// htons converts to network byte order for the socket calls.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// responder answers ARP on one interface for a set of IPv4 addresses,
// with the interface's own hardware address.
type responder struct {
	ifi *net.Interface
	fd  int

	mu    sync.Mutex
	addrs map[netip.Addr]bool
	done  chan struct{}
}

// newResponder opens a packet socket for ARP on ifi (it needs CAP_NET_RAW).
func newResponder(ifi *net.Interface) (*responder, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return nil, fmt.Errorf("open an ARP socket: %w (the node service needs CAP_NET_RAW)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind the ARP socket to %s: %w", ifi.Name, err)
	}
	// A read timeout lets the loop notice Close.
	tv := unix.Timeval{Sec: 0, Usec: 500000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ARP socket on %s: %w", ifi.Name, err)
	}
	r := &responder{ifi: ifi, fd: fd, addrs: map[netip.Addr]bool{}, done: make(chan struct{})}
	go r.loop()
	return r, nil
}

// set replaces the announced addresses and sends gratuitous ARP for each
// new one (now, and twice more within two seconds, as a lost packet
// would leave peers on the old node until their entries expire).
func (r *responder) set(addrs []netip.Addr) {
	r.mu.Lock()
	var added []netip.Addr
	next := map[netip.Addr]bool{}
	for _, a := range addrs {
		next[a] = true
		if !r.addrs[a] {
			added = append(added, a)
		}
	}
	r.addrs = next
	r.mu.Unlock()
	for _, a := range added {
		r.gratuitous(a)
		go func() {
			for range 2 {
				select {
				case <-r.done:
					return
				case <-time.After(time.Second):
				}
				if r.has(a) {
					r.gratuitous(a)
				}
			}
		}()
	}
}

func (r *responder) has(a netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[a]
}

func (r *responder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.addrs)
}

// close stops answering.
func (r *responder) close() {
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
}

func (r *responder) loop() {
	defer unix.Close(r.fd)
	buf := make([]byte, 1500)
	for {
		select {
		case <-r.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		req, ok := parseARP(buf[:n])
		if !ok || req.op != opRequest || !r.has(req.targetIP) || req.senderIP == req.targetIP {
			continue
		}
		r.send(buildARP(opReply, r.ifi.HardwareAddr, req.senderHW, req.targetIP, req.senderHW, req.senderIP))
	}
}

// gratuitous broadcasts an ARP request for a from a itself: peers that
// have an entry for a update it to this interface's hardware address.
func (r *responder) gratuitous(a netip.Addr) {
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	r.send(buildARP(opRequest, r.ifi.HardwareAddr, bcast, a, net.HardwareAddr{0, 0, 0, 0, 0, 0}, a))
}

func (r *responder) send(frame []byte) {
	var dst [8]byte
	copy(dst[:], frame[0:6])
	_ = unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: r.ifi.Index, Halen: 6, Addr: dst})
}

type arpPacket struct {
	op                 uint16
	senderHW, targetHW net.HardwareAddr
	senderIP, targetIP netip.Addr
}

// parseARP reads an Ethernet frame holding an IPv4-over-Ethernet ARP packet.
func parseARP(b []byte) (arpPacket, bool) {
	if len(b) < ethHeaderLen+arpLen || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_ARP {
		return arpPacket{}, false
	}
	a := b[ethHeaderLen:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != unix.ETH_P_IP || a[4] != 6 || a[5] != 4 {
		return arpPacket{}, false
	}
	return arpPacket{
		op:       binary.BigEndian.Uint16(a[6:8]),
		senderHW: net.HardwareAddr(append([]byte(nil), a[8:14]...)),
		senderIP: netip.AddrFrom4([4]byte(a[14:18])),
		targetHW: net.HardwareAddr(append([]byte(nil), a[18:24]...)),
		targetIP: netip.AddrFrom4([4]byte(a[24:28])),
	}, true
}

// buildARP makes an Ethernet frame (from srcHW to dstHW) carrying an ARP
// packet: sender srcHW/srcIP, target tgtHW/tgtIP.
func buildARP(op uint16, srcHW, dstHW net.HardwareAddr, srcIP netip.Addr, tgtHW net.HardwareAddr, tgtIP netip.Addr) []byte {
	b := make([]byte, ethHeaderLen+arpLen)
	copy(b[0:6], dstHW)
	copy(b[6:12], srcHW)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], srcHW)
	s4 := srcIP.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], tgtHW)
	t4 := tgtIP.As4()
	copy(a[24:28], t4[:])
	return b
}
