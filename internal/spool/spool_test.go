//go:build unix

package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/fsys/crashfs"
)

// fill opens a spool in dir (on m; nil: the OS) and appends records
// 0..n-1, synced, in batches of 10; it acknowledges the first acked.
func fill(t *testing.T, m FS, dir string, n, acked int) {
	t.Helper()
	l, j := open(t, m, dir)
	for id := 0; id < n; id += 10 {
		j.add(t, l, id, min(id+10, n), true)
	}
	for a := 0; a < acked; a += 10 {
		j.ack(t, l, min(10, acked-a))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenHeaderlessLastSegment: a crash (or a full disk) between creating
// a segment and its header leaves it empty or headerless: it opens, and
// every record is kept.
func TestOpenHeaderlessLastSegment(t *testing.T) {
	for name, content := range map[string][]byte{"empty": nil, "part of the header": []byte("TTSP"), "zeros": make([]byte, 4096)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, nil, dir, 30, 0)
			next := filepath.Join(dir, "00000000000000000030.seg")
			if err := os.WriteFile(next, content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, nil, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 30 {
				t.Fatalf("got %d records, want 30", len(got))
			}
		})
	}
}

// TestOpenDamageACrashCannotExplain: one flipped bit in the last record,
// or a segment holding fewer records than ACKED counts, is ErrCorrupt
// naming the file.
func TestOpenDamageACrashCannotExplain(t *testing.T) {
	t.Run("bit flipped in the last record", func(t *testing.T) {
		for _, back := range []int{1, 100, 300, 305, 311} { // payload bytes, then the header
			dir := t.TempDir()
			fill(t, nil, dir, 20, 0)
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			seg := segs[0]
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-back] ^= 0x04
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = readAll(t, nil, dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), seg) {
				t.Errorf("byte %d from the end: %v", back, err)
			}
		}
	})
	t.Run("fewer records than acknowledged", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, nil, dir, 40, 30)
		segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		seg := segs[0]
		st, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(seg, st.Size()-15*312); err != nil { // 25 records left
			t.Fatal(err)
		}
		_, err = readAll(t, nil, dir)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "ACKED") {
			t.Errorf("%v", err)
		}
	})
}

// TestOpenLostSegmentBeforeAnEmptyOne: an empty last segment is what a
// crash leaves, but not when the records before it are gone too.
func TestOpenLostSegmentBeforeAnEmptyOne(t *testing.T) {
	dir := t.TempDir()
	fill(t, nil, dir, 40, 30)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")) // a valid pattern: no error
	for _, seg := range segs {
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000040.seg"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, nil, dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%v", err)
	}
}

// TestFullDisk: an Append the disk has no room for fails and takes
// nothing; once there is room the spool takes records again, and every
// record whose Sync returned is there once.
func TestFullDisk(t *testing.T) {
	m := crashfs.New()
	fill(t, m, "/spool", 20, 0)
	m.SetFree(1000) // three more records
	l, j := open(t, m, "/spool")
	j.add(t, l, 20, 22, true)
	var b []byte
	for id := 22; id < 32; id++ {
		at := len(b)
		b = append(append(b, make([]byte, HeaderSize)...), payload(id)...)
		Frame(b, at)
	}
	if _, _, err := l.Append(b, 10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append to a full disk: %v", err)
	}
	m.SetFree(-1) // room again
	j.add(t, l, 22, 32, true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, m, "/spool")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 32 || got[31] != 31 || got[20] != 20 {
		t.Fatalf("records %v", got)
	}
}

// TestOpenRefusesWhatIsNotARegularFile: a FIFO, a symlink or a directory
// in place of ACKED, LOCK or a segment is an error naming it, at once; a
// symlink is never followed.
func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	for _, name := range []string{"ACKED", "LOCK", "00000000000000000000.seg"} {
		for kind, mk := range map[string]func(path string) error{
			"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o600) },
			"symlink": func(p string) error { return os.Symlink(filepath.Join(filepath.Dir(p), "..", "target"), p) },
			"dir":     func(p string) error { return os.Mkdir(p, 0o700) },
		} {
			t.Run(name+" "+kind, func(t *testing.T) {
				root := t.TempDir()
				dir := filepath.Join(root, "spool")
				fill(t, nil, dir, 10, 0)
				target := filepath.Join(root, "target")
				if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, name)
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				if err := mk(p); err != nil {
					t.Skip(err)
				}
				done := make(chan error, 1)
				go func() {
					_, err := Open(dir, Options{Limit: 1 << 20, Batch: 10})
					done <- err
				}()
				select {
				case err := <-done:
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
						t.Errorf("open: %v", err)
					}
				case <-time.After(time.Second):
					t.Fatal("open hangs")
				}
				if b, _ := os.ReadFile(target); string(b) != "keep" {
					t.Errorf("the symlink's target was changed: %q", b)
				}
			})
		}
	}
}

// TestOpenRefusesAnUnsafeDir: a directory others may write in is refused;
// a new one is made 0700, its parents too.
func TestOpenRefusesAnUnsafeDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	fill(t, nil, dir, 1, 0)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, st, err)
		}
	}
	for _, mode := range []os.FileMode{0o777, 0o720} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, Options{Limit: 1 << 20}); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

// TestOpenForeign: a spool records its owner; another is ErrForeign.
func TestOpenForeign(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Limit: 1 << 20, Owner: Owner{1}})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := Open(dir, Options{Limit: 1 << 20, Owner: Owner{2}}); !errors.Is(err, ErrForeign) {
		t.Fatalf("%v", err)
	}
	l, err = Open(dir, Options{Limit: 1 << 20, Owner: Owner{1}})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestOpenV02Spool: a spool a v0.2 Writer left (32-byte ACKED slots, no
// owner) opens with what it acknowledged, and is taken over.
func TestOpenV02Spool(t *testing.T) {
	dir := t.TempDir()
	fill(t, nil, dir, 30, 0)
	var old [2 * oldAckSlot]byte
	s := old[oldAckSlot:]
	copy(s, oldMagic)
	binary.LittleEndian.PutUint64(s[4:12], 7)  // generation
	binary.LittleEndian.PutUint64(s[12:20], 5) // acknowledged
	binary.LittleEndian.PutUint32(s[20:24], 10)
	binary.LittleEndian.PutUint32(s[24:28], crc32.Checksum(s[:24], castagnoli))
	if err := os.WriteFile(filepath.Join(dir, ackName), old[:], 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 25 || got[0] != 5 {
		t.Fatalf("records %v", got)
	}
	if st, _ := os.Stat(filepath.Join(dir, ackName)); st.Size() != 2*ackSlot {
		t.Errorf("ACKED of %d bytes", st.Size())
	}
	if _, err := Open(dir, Options{Limit: 1 << 20, Owner: Owner{9}}); err != nil {
		t.Errorf("an old spool has no owner yet: %v", err)
	}
}

// noLockFS is a file system that cannot lock, as some systems are.
type noLockFS struct{ *crashfs.FS }

func (noLockFS) Lock(File) error { return errors.ErrUnsupported }

// TestOpenWithoutALock: where the directory cannot be locked, the spool is
// not opened: a second writer could not be kept out.
func TestOpenWithoutALock(t *testing.T) {
	_, err := Open("/spool", Options{Limit: 1 << 20, FS: noLockFS{crashfs.New()}})
	if !errors.Is(err, ErrNoLock) {
		t.Fatalf("%v", err)
	}
}

// TestFullDiskAtSegmentRoll: a disk that fills up while a new segment is
// started leaves no half-made segment, and the spool goes on once there is
// room.
func TestFullDiskAtSegmentRoll(t *testing.T) {
	m := crashfs.New()
	l, j := open(t, m, "/spool")
	id := 0
	for ; l.size+10*312 <= l.segMax(); id += 10 {
		j.add(t, l, id, id+10, true)
	}
	m.SetFree(4) // not even a segment header
	var b []byte
	for i := id; i < id+10; i++ {
		at := len(b)
		b = append(append(b, make([]byte, HeaderSize)...), payload(i)...)
		Frame(b, at)
	}
	if _, room, err := l.Append(b, 10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append to a full disk: %v (full spool: %v)", err, room != nil)
	}
	if entries, _ := m.ReadDir("/spool"); len(entries) != 3 { // LOCK, ACKED, one segment
		t.Fatalf("left behind: %v", entries)
	}
	m.SetFree(-1)
	j.add(t, l, id, id+10, true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, m, "/spool")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != id+10 || got[id] != id {
		t.Fatalf("%d records", len(got))
	}
}
