package node

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInotifyWatches(t *testing.T) {
	dev := unix.Mkdev(8, 1)
	info := []byte("pos:\t0\nflags:\t02004000\nmnt_id:\t29\nino:\t1057\n" +
		"inotify wd:2 ino:a0012 sdev:800001 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:12000a00c9f1c4a1\n" +
		"inotify wd:1 ino:1b sdev:800001 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:1b000000\n")
	for _, c := range []struct {
		dev, ino uint64
		want     bool
	}{
		{dev, 0xa0012, true},
		{dev, 0x1b, true},
		{dev, 0x1c, false},                     // another inode
		{unix.Mkdev(8, 2), 0xa0012, false},     // the same inode number on another device
		{unix.Mkdev(0, 0x800001), 0x1b, false}, // the kernel's encoding read as stat's
	} {
		if got := inotifyWatches(info, c.dev, c.ino); got != c.want {
			t.Errorf("dev %d:%d ino %x: got %v, want %v", unix.Major(c.dev), unix.Minor(c.dev), c.ino, got, c.want)
		}
	}
	if inotifyWatches([]byte("pos:\t0\ninotify wd:1 ino:zz sdev:800001\n"), dev, 0) {
		t.Error("a malformed line matched")
	}
}

// TestWatchesThisProcess sets an inotify watch in this process and finds it
// through /proc, as WaitKubeletWatch finds the kubelet's.
func TestWatchesThisProcess(t *testing.T) {
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if ok, err := watches(os.Getpid(), st.Dev, st.Ino); err != nil || ok {
		t.Fatalf("before the watch: %v, %v", ok, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("no inotify here: %v", err)
	}
	defer unix.Close(fd)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, other, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	if ok, _ := watches(os.Getpid(), st.Dev, st.Ino); ok {
		t.Fatal("a watch on another directory counted")
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	ok, err := watches(os.Getpid(), st.Dev, st.Ino)
	if err != nil || !ok {
		info, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
		t.Fatalf("the watch was not found (%v, %v); fdinfo:\n%s", ok, err, info)
	}
}
