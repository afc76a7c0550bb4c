package crashfs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/thethings-go/thethings/internal/fsys"
	"github.com/thethings-go/thethings/internal/fsys/crashfs"
)

// A crash after the last of two unsynced writes, beside an unsynced
// create and rename, leaves what a disk that keeps only what was fsync'd
// can: the synced data alone, the last write torn, zeroed or kept without
// the one before it, any subset of the entry changes; a kill keeps all.
func TestCrashesKeepOnlyWhatWasSynced(t *testing.T) {
	m := crashfs.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Mkdir("/d", 0o700))
	must(m.SyncDir("/"))
	f, err := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o600)
	must(err)
	_, err = f.WriteAt([]byte("abcd"), 0)
	must(err)
	must(f.Sync())
	must(m.SyncDir("/d"))
	g, err := m.CreateTemp("/d", "b-*")
	must(err)
	must(m.Rename(g.Name(), "/d/c"))
	m.Record()
	_, err = f.WriteAt([]byte("wxyz"), 4)
	must(err)
	_, err = f.WriteAt([]byte("12"), 8)
	must(err)

	got := map[string]bool{}
	for _, c := range m.Crashes() {
		if c.Done != m.Ops() {
			continue // the crashes after the last write
		}
		a, _, _ := c.FS.Content("/d/a")
		var names []string
		entries, err := c.FS.ReadDir("/d")
		must(err)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		got[fmt.Sprintf("%q %v", a, names)] = true
	}
	var want []string
	for _, a := range []string{"abcd", "abcd\x00\x00\x00\x001", "abcd\x00\x00\x00\x00\x00\x00", "abcd\x00\x00\x00\x0012"} {
		for _, names := range [][]string{{"a"}, {"a", "b-1"}, {"a", "c"}} { // the rename kept without the create: c
			want = append(want, fmt.Sprintf("%q %v", a, names))
		}
	}
	want = append(want, fmt.Sprintf("%q %v", "abcdwxyz12", []string{"a", "c"})) // a kill
	for _, w := range want {
		if !got[w] {
			t.Errorf("no crash leaves %s", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d states, want %d: %v", len(got), len(want), got)
	}
}

// A file's mode is durable once the file is synced, as its data is: a
// power cut after a chmod not synced keeps the mode it was created with.
func TestCrashesKeepTheSyncedMode(t *testing.T) {
	m := crashfs.New().Put("/d/app", "v1", 0o755).Record()
	f, err := m.CreateTemp("/d", ".new-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	got := map[string]fs.FileMode{}
	for _, c := range m.Crashes() {
		if _, mode, ok := c.FS.Content(f.Name()); ok && c.Done == m.Ops() {
			got[strings.Fields(c.What)[0]] |= mode
		}
	}
	if want := map[string]fs.FileMode{"kill": 0o755, "power": 0o600}; !maps.Equal(got, want) {
		t.Errorf("modes after the directory sync: %v, want %v", got, want)
	}
}

func TestFailAtFullDiskNoLinksLocks(t *testing.T) {
	m := crashfs.New()
	m.FailAt = 2
	if err := m.Mkdir("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); !errors.Is(err, crashfs.ErrInjected) {
		t.Errorf("operation 2: %v, want ErrInjected", err)
	}

	f, err := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	m.SetFree(3)
	if n, err := f.Write([]byte("hello")); n != 3 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write to a full disk: %d, %v", n, err)
	}

	m.NoLinks = true
	if err := m.Link("/d/a", "/d/b"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("link without links: %v", err)
	}

	g, err := m.OpenFile("/d/a", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(f); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(g); !errors.Is(err, fsys.ErrLocked) {
		t.Errorf("second lock: %v", err)
	}
	m.Kill()
	if err := m.Lock(g); err != nil {
		t.Errorf("lock after the holder was killed: %v", err)
	}
	if entries, _ := m.ReadDir("/d"); !slices.EqualFunc(entries, []string{"a"}, func(e fs.DirEntry, n string) bool { return e.Name() == n }) {
		t.Errorf("entries %v", entries)
	}
}
