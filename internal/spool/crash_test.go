package spool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/thethings-go/thethings/internal/fsys/crashfs"
)

const crashDir = "/var/lib/thing/spool" // made by Open, parents included

// journal is what a run told its caller, and when (in recorded operations).
type journal struct {
	fs     *crashfs.FS
	synced map[int]int // record → operations done when its Sync returned
	acking map[int]int // record → operations done when its Ack began
	acked  map[int]int // record → operations done when its Ack returned
}

func (j *journal) now() int {
	if j.fs == nil {
		return 0 // not on a crashfs.FS: no crash states to check
	}
	return j.fs.Ops()
}

// payload is record id's payload: 300 bytes, no zero byte.
func payload(id int) []byte {
	return []byte(fmt.Sprintf("rec-%08d-%s", id, strings.Repeat("x", 287)))
}

func idOf(t *testing.T, p []byte) int {
	id, err := strconv.Atoi(string(p[4:12]))
	if err != nil {
		t.Fatalf("record %q", p)
	}
	return id
}

// add appends records from..to-1 in one Append and syncs them.
func (j *journal) add(t *testing.T, l *Log, from, to int, sync bool) {
	t.Helper()
	var b []byte
	for id := from; id < to; id++ {
		at := len(b)
		b = append(b, make([]byte, HeaderSize)...)
		b = append(b, payload(id)...)
		Frame(b, at)
	}
	ticket, room, err := l.Append(b, to-from)
	if err != nil || room != nil {
		t.Fatalf("append: %v (full: %v)", err, room != nil)
	}
	if !sync {
		return
	}
	if err := l.Sync(ticket); err != nil {
		t.Fatal(err)
	}
	for id := from; id < to; id++ {
		j.synced[id] = j.now()
	}
}

// ack reads k records and acknowledges them.
func (j *journal) ack(t *testing.T, l *Log, k int) {
	t.Helper()
	recs, err := l.Next(k)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, p := range recs {
		ids = append(ids, idOf(t, p))
		j.acking[idOf(t, p)] = j.now()
	}
	if err := l.Ack(len(recs)); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		j.acked[id] = j.now()
	}
}

// open opens the spool in dir on m (nil: the OS), and a journal of what
// it tells, timed by m's operations when m is a crashfs.FS.
func open(t *testing.T, m FS, dir string) (*Log, *journal) {
	t.Helper()
	l, err := Open(dir, Options{Limit: 1 << 20, Batch: 10, FS: m})
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{synced: map[int]int{}, acking: map[int]int{}, acked: map[int]int{}}
	j.fs, _ = m.(*crashfs.FS)
	return l, j
}

// readAll opens the spool in dir (on m; nil: the OS), returns the ids of
// the records it holds, and closes it.
func readAll(t *testing.T, m FS, dir string) ([]int, error) {
	t.Helper()
	l, err := Open(dir, Options{Limit: 1 << 20, Batch: 10, FS: m})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got []int
	for {
		recs, err := l.Next(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return got, nil
		}
		for _, p := range recs {
			got = append(got, idOf(t, p))
		}
	}
}

// check opens every state a crash could leave during the run recorded in
// m (at least atLeast of them): each must open, hold every record whose Sync returned and whose Ack
// had not begun, exactly once and in order, and no record whose Ack
// returned.
func (j *journal) check(t *testing.T, atLeast int) {
	t.Helper()
	states := j.fs.Crashes()
	if len(states) < atLeast {
		t.Fatalf("only %d crash states", len(states))
	}
	for _, st := range states {
		done := st.Done
		got, err := readAll(t, st.FS, crashDir)
		if err != nil {
			t.Errorf("state after %d operations (%s): open: %v", st.Done, st.What, err)
			continue
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("state after %d operations (%s): records out of order or twice: %v", st.Done, st.What, got)
		}
		for id, at := range j.synced {
			began, acking := j.acking[id]
			if at <= done && (!acking || began >= done) && !slices.Contains(got, id) {
				t.Errorf("state after %d operations (%s): synced record %d lost", st.Done, st.What, id)
			}
		}
		for id, at := range j.acked {
			if at <= done && slices.Contains(got, id) {
				t.Errorf("state after %d operations (%s): acknowledged record %d back", st.Done, st.What, id)
			}
		}
	}
	t.Logf("%d crash states opened (distinct at each crash point), %d distinct file systems", len(states), len(crashfs.Distinct(states)))
}

// TestCrashStatesAddRollAck: a new spool (its dir and parents made), Adds
// that roll segments, acknowledgements that delete them, Close.
func TestCrashStatesAddRollAck(t *testing.T) {
	m := crashfs.New().Record()
	l, j := open(t, m, crashDir)
	id := 0
	for range 30 { // 300 records of 312 bytes: two segment rolls
		j.add(t, l, id, id+10, true)
		id += 10
		if id%50 == 0 {
			j.ack(t, l, 20)
		}
	}
	for range 20 {
		j.ack(t, l, 10)
	}
	j.add(t, l, id, id+10, true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	j.check(t, 300)
}

// TestCrashStatesReopen: a process killed with records written but not
// synced and the last one cut short; the Log opened after it reads
// and acknowledges them. What it acknowledged must survive a power cut
// at any point after: opening syncs what it trusts before anything is
// done on its word.
func TestCrashStatesReopen(t *testing.T) {
	m := crashfs.New()
	l, j := open(t, m, crashDir)
	j.add(t, l, 0, 10, true)
	j.add(t, l, 10, 20, false) // written, not synced: the process dies
	m.Kill()
	// ... in the middle of writing a record, which opening cuts off.
	seg := crashDir + "/00000000000000000000.seg"
	f, err := m.OpenFile(seg, osRDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	rec := append(make([]byte, HeaderSize), payload(99)...)
	Frame(rec, 0)
	if _, err := f.WriteAt(rec[:100], st.Size()); err != nil {
		t.Fatal(err)
	}
	m.Record()
	l, _ = open(t, m, crashDir)
	j.ack(t, l, 10)
	j.ack(t, l, 10) // the records the dead process never synced
	j.add(t, l, 20, 30, true)
	m.Kill()
	l, _ = open(t, m, crashDir)
	j.ack(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	j.check(t, 30)
}

// TestCrashStatesUnsyncedAck: a process killed between writing an ACKED
// slot and syncing it. The Log opened after it trusts that slot (the
// records it acknowledges are not read again), so it must make it durable
// first: after a power cut at any point of the reopening, they must not
// come back.
func TestCrashStatesUnsyncedAck(t *testing.T) {
	m := crashfs.New()
	l, j := open(t, m, crashDir)
	j.add(t, l, 0, 30, true)
	j.ack(t, l, 10)
	// What Ack of the next 10 writes, without its sync: the process dies.
	mk := l.ack.mark
	mk.gen++
	mk.acked += 10
	slot := mk.encode()
	if _, err := l.ack.f.WriteAt(slot[:], int64(mk.gen%2)*ackSlot); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	m.Record()
	start := m.Ops()
	l, _ = open(t, m, crashDir)
	recs, err := l.Next(100)
	if err != nil || len(recs) != 10 || idOf(t, recs[0]) != 20 {
		t.Fatalf("reopened: %d records, %v", len(recs), err)
	}
	for id := 10; id < 20; id++ {
		j.acked[id] = start + 1 // trusted as acknowledged from the first operation of the reopening
	}
	j.synced = map[int]int{}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	j.check(t, 4)
}
