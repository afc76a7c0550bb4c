package crashfs

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// image is both states after one operation, and that operation's write,
// if it was one, to tear.
type image struct {
	op      string
	done    int
	nodes   map[int]node
	names   map[string]int
	durable map[string]int
	pending []change
	write   *write
}

type write struct {
	id   int
	off  int64
	data []byte
}

// Record starts keeping, from now on, the states a crash after each
// operation leaves, the first of them the state before the next
// operation; it returns m.
func (m *FS) Record() *FS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.images = []image{}
	m.snap("start", nil)
	return m
}

func (m *FS) snap(op string, w *write) {
	if m.images == nil {
		return
	}
	m.images = append(m.images, image{op: op, done: m.ops, nodes: maps.Clone(m.nodes), names: maps.Clone(m.names),
		durable: maps.Clone(m.durable), pending: slices.Clone(m.pending), write: w})
}

// Crash is a state a crash can leave.
type Crash struct {
	Done int    // the operations done before it, as Ops counted them
	What string // what crashed when, and the operations recorded until then
	FS   *FS    // the file system it leaves, not recording
	key  string
}

// Crashes returns every state a crash after each recorded operation can
// leave: a kill, and a power cut keeping each subset of the directory
// changes not synced, with the last write, if
// the operation was one, whole or torn. A state appears once per
// operation; the same state after two operations appears twice, since
// what a test expects of it depends on when the crash came (see
// Distinct).
func (m *FS) Crashes() []Crash {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Crash
	var ops []string
	for i, img := range m.images {
		ops = append(ops, img.op)
		seen := map[string]bool{}
		add := func(c *FS, what string) {
			k := c.key()
			if !seen[k] {
				seen[k] = true
				out = append(out, Crash{Done: img.done, What: fmt.Sprintf("%s after operation %d (%s); operations: %s",
					what, i, img.op, strings.Join(ops, ", ")), FS: c, key: k})
			}
		}
		add(m.restore(img.names, img.nodes, true), "kill")
		if len(img.pending) > 12 {
			panic("crashfs: too many directory changes not synced to try every subset")
		}
		for keep := range 1 << len(img.pending) {
			names := maps.Clone(img.durable)
			kept := 0
			for k, c := range img.pending {
				if keep&(1<<k) != 0 {
					kept++
					apply(names, c)
				}
			}
			what := fmt.Sprintf("power cut keeping %d of %d directory changes", kept, len(img.pending))
			add(m.restore(names, img.nodes, false), what)
			if w := img.write; w != nil {
				for _, how := range []string{"half", "zeros", "alone"} {
					add(m.restore(names, tear(img.nodes, w, how), false), what+", the last write torn ("+how+")")
				}
			}
		}
	}
	return out
}

// tear returns nodes with w's file as a power cut during w leaves it.
func tear(nodes map[int]node, w *write, how string) map[int]node {
	nodes = maps.Clone(nodes)
	n := nodes[w.id]
	part := w.data[:len(w.data)/2]
	switch how {
	case "zeros":
		part = make([]byte, len(w.data))
	case "alone": // reached the disk before the unsynced writes before it
		part = w.data
	}
	n.synced = splice(n.synced, w.off, part)
	nodes[w.id] = n
	return nodes
}

// splice returns a copy of d with b at off, grown with zeros as needed.
func splice(d []byte, off int64, b []byte) []byte {
	d = slices.Clone(d)
	if end := off + int64(len(b)); end > int64(len(d)) {
		d = append(d, make([]byte, end-int64(len(d)))...)
	}
	copy(d[off:], b)
	return d
}

// restore is a file system holding names and their nodes, as the process
// saw them or as a power cut left them.
func (m *FS) restore(names map[string]int, nodes map[int]node, process bool) *FS {
	c := New()
	c.NoLinks, c.temps = m.NoLinks, m.temps
	for p, id := range names {
		if !reachable(p, names) {
			continue
		}
		n := nodes[id]
		if !process {
			n.data, n.mode = n.synced, n.syncMode
		}
		n.synced, n.syncMode = n.data, n.mode
		c.nodes[id], c.names[p], c.durable[p] = n, id, id
		c.next = max(c.next, id+1)
	}
	return c
}

// reachable: every directory above p is there too.
func reachable(p string, names map[string]int) bool {
	for d := path.Dir(p); d != p; p, d = d, path.Dir(d) {
		if _, ok := names[d]; !ok {
			return false
		}
	}
	return true
}

// key identifies a state by its names, and their kinds, modes and data.
func (m *FS) key() string {
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(m.names)) {
		n := m.nodes[m.names[p]]
		fmt.Fprintf(&b, "%s %v %o %q\n", p, n.dir, n.mode, n.data)
	}
	return b.String()
}

// Distinct returns the crashes that leave distinct states, the first of
// each.
func Distinct(crashes []Crash) []Crash {
	seen := map[string]bool{}
	var out []Crash
	for _, c := range crashes {
		if !seen[c.key] {
			seen[c.key] = true
			out = append(out, c)
		}
	}
	return out
}
