// Command nbclient is the network probe that kubeforge's end-to-end tests
// and bench run inside pods (see package netbench). It is a static Go
// program with no dependency on the image's libc.
//
//	nbclient http [-n N] [-timeout D] URL   N sequential GETs, one line per request, then a summary
//	nbclient lookup [-timeout D] NAME       resolve NAME through /etc/resolv.conf (search list, ndots)
//	nbclient query [-timeout D] NAME        one raw DNS A query to the first nameserver; prints its rcode
//
// Output lines are "key=value" fields, parsed by package netbench.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nbclient http|lookup|query [flags] ARG")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "http":
		err = httpCmd(os.Args[2:])
	case "lookup":
		err = lookupCmd(os.Args[2:])
	case "query":
		err = queryCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbclient:", err)
		os.Exit(1)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// httpCmd sends n GET requests one after the other, each on a new
// connection (so every request goes through the Service's connection
// setup: DNAT, conntrack, endpoint choice).
func httpCmd(args []string) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	n := fs.Int("n", 1, "number of requests")
	timeout := fs.Duration("timeout", 3*time.Second, "timeout per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("http: want one URL")
	}
	url := fs.Arg(0)
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	var lat []time.Duration
	fails := 0
	for i := 0; i < *n; i++ {
		start := time.Now()
		resp, err := client.Get(url)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		d := time.Since(start)
		if err != nil {
			fails++
			fmt.Printf("req i=%d ms=%s err=%q\n", i, ms(d), err.Error())
			continue
		}
		lat = append(lat, d)
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		fmt.Printf("req i=%d ms=%s body=%q\n", i, ms(d), first)
	}
	slices.Sort(lat)
	pct := func(p float64) string {
		if len(lat) == 0 {
			return "NaN"
		}
		return ms(lat[min(len(lat)-1, int(float64(len(lat))*p))])
	}
	fmt.Printf("summary n=%d ok=%d fail=%d p50_ms=%s p99_ms=%s\n", *n, len(lat), fails, pct(0.50), pct(0.99))
	if fails > 0 {
		return fmt.Errorf("%d of %d requests failed", fails, *n)
	}
	return nil
}

// lookupCmd resolves a name the way a program in the pod does: Go's own
// resolver reading /etc/resolv.conf (nameservers, search list, ndots).
func lookupCmd(args []string) error {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("lookup: want one name")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	start := time.Now()
	addrs, err := r.LookupHost(ctx, fs.Arg(0))
	if err != nil {
		fmt.Printf("lookup name=%s ms=%s err=%q\n", fs.Arg(0), ms(time.Since(start)), err.Error())
		return err
	}
	slices.Sort(addrs)
	fmt.Printf("lookup name=%s ms=%s addrs=%s\n", fs.Arg(0), ms(time.Since(start)), strings.Join(addrs, ","))
	return nil
}

// queryCmd sends one A query for name (as given: no search list) over UDP
// to the first nameserver of /etc/resolv.conf and prints the rcode, or
// rcode=timeout. It succeeds whenever an answer (of any rcode) came back.
func queryCmd(args []string) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("query: want one name")
	}
	server, err := firstNameserver("/etc/resolv.conf")
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	qname, err := dnsmessage.NewName(name)
	if err != nil {
		return err
	}
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	packed, err := msg.Pack()
	if err != nil {
		return err
	}
	start := time.Now()
	conn, err := net.Dial("udp", net.JoinHostPort(server, "53"))
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(*timeout))
	if _, err := conn.Write(packed); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				fmt.Printf("query name=%s server=%s ms=%s rcode=timeout\n", name, server, ms(time.Since(start)))
				return nil
			}
			fmt.Printf("query name=%s server=%s ms=%s rcode=error err=%q\n", name, server, ms(time.Since(start)), err.Error())
			return err
		}
		var resp dnsmessage.Message
		if err := resp.Unpack(buf[:n]); err != nil || resp.ID != id {
			continue
		}
		var addrs []string
		for _, a := range resp.Answers {
			if r, ok := a.Body.(*dnsmessage.AResource); ok {
				addrs = append(addrs, net.IP(r.A[:]).String())
			}
		}
		fmt.Printf("query name=%s server=%s ms=%s rcode=%s answers=%d addrs=%s\n", name, server, ms(time.Since(start)),
			strings.TrimPrefix(resp.RCode.String(), "RCode"), len(resp.Answers), strings.Join(addrs, ","))
		return nil
	}
}

func firstNameserver(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s has no nameserver", path)
}
