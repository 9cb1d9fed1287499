package kubeapiserver

import (
	"net"
	"reflect"
	"testing"
	"time"
)

func TestEtcdServers(t *testing.T) {
	got := etcdServers([]string{"--advertise-address=10.0.0.1", "--etcd-servers=https://127.0.0.1:2379,https://[::1]:2379,https://etcd.example", "--x"})
	want := []string{"127.0.0.1:2379", "[::1]:2379", "etcd.example:2379"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("etcdServers = %v, want %v", got, want)
	}
	if got := etcdServers([]string{"--etcd-servers", "http://10.0.0.2:12379"}); !reflect.DeepEqual(got, []string{"10.0.0.2:12379"}) {
		t.Fatalf("separate value: %v", got)
	}
	if got := etcdServers(nil); len(got) != 0 {
		t.Fatalf("no flag: %v", got)
	}
}

func TestWaitForEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// Nothing listens: it gives up after max.
	start := time.Now()
	waitForEtcd([]string{addr}, 150*time.Millisecond)
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("waited %v without etcd", d)
	}
	// etcd comes up meanwhile: it returns soon after.
	go func() {
		time.Sleep(100 * time.Millisecond)
		l2, err := net.Listen("tcp", addr)
		if err == nil {
			time.Sleep(2 * time.Second)
			l2.Close()
		}
	}()
	start = time.Now()
	waitForEtcd([]string{addr}, 5*time.Second)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("returned %v after etcd came up", d)
	}
}
