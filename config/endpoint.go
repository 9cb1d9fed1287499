package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Endpoint is a host (an IP address or a DNS name) with an optional port:
// the API server's advertise address and bind port, the cluster's
// controlPlaneEndpoint. It is the one host:port type of config and pki.
type Endpoint struct {
	// Host is an IP address (without brackets) or a DNS-1123 subdomain.
	Host string
	// Port is 1-65535, or 0 when none was given (see WithDefaultPort).
	Port int32
}

// ParseEndpoint reads "host", "host:port", "[v6]:port", "[v6]" or a bare
// IPv6 address, as kubeadm's ParseHostPort: the host must be an IP address
// or a DNS-1123 subdomain, a port 1-65535. Errors describe the value
// only; callers put the field or flag in front.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, errors.New("empty: give a host (IP address or DNS name) with an optional :port")
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Endpoint{}, fmt.Errorf("%q: missing ']' after the IPv6 address", s)
		}
		host = s[1:end]
		switch rest := s[end+1:]; {
		case rest == "":
		case strings.HasPrefix(rest, ":"):
			port = rest[1:]
			if port == "" {
				return Endpoint{}, fmt.Errorf("%q: missing port after ':'", s)
			}
		default:
			return Endpoint{}, fmt.Errorf("%q: unexpected %q after the IPv6 address", s, rest)
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return Endpoint{}, fmt.Errorf("%q: missing port after ':'", s)
		}
	case strings.Count(s, ":") > 1:
		// A bare IPv6 address has no port: "[v6]:port" names one.
		if net.ParseIP(s) == nil {
			return Endpoint{}, fmt.Errorf("%q is not an IPv6 address; write an IPv6 address with a port as [address]:port", s)
		}
	}
	e := Endpoint{Host: host}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("%q: port %q must be a number between 1 and 65535", s, port)
		}
		e.Port = int32(n)
	}
	if host == "" {
		return Endpoint{}, fmt.Errorf("%q: missing host", s)
	}
	if net.ParseIP(host) == nil {
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
			return Endpoint{}, fmt.Errorf("%q: host %q must be an IP address or a DNS name: %s", s, host, msgs[0])
		}
	}
	return e, nil
}

// IsZero reports whether no endpoint is set.
func (e Endpoint) IsZero() bool { return e == Endpoint{} }

// IP is the host as an IP address, nil for a DNS name.
func (e Endpoint) IP() net.IP { return net.ParseIP(e.Host) }

// WithDefaultPort returns e with port when it has none.
func (e Endpoint) WithDefaultPort(port int32) Endpoint {
	if e.Port == 0 {
		e.Port = port
	}
	return e
}

// String is "host:port" ("[v6]:port"), or the host alone when there is no
// port; ParseEndpoint reads it back.
func (e Endpoint) String() string {
	if e.Port == 0 {
		if strings.Contains(e.Host, ":") {
			return "[" + e.Host + "]"
		}
		return e.Host
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// URL is https://host:port (the port must be set).
func (e Endpoint) URL() string { return "https://" + e.String() }
