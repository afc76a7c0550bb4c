package thethingstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/internal/testkit"
)

// parallel runs fn(i) for i in [0,n) on at most workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// TestManySubscriptions opens 2,000 streams (4,000 sockets in this process,
// well under the open-file limit, and few enough goroutines for -race),
// broadcasts one write to all of them and checks they all go away again.
func TestManySubscriptions(t *testing.T) {
	const n = 2000
	e := setup(t, nil, WithThingTokens("tok"))
	subs := make([]*rawSub, n)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc + ms.StackInuse
	var failed atomic.Int64
	parallel(n, 32, func(i int) {
		s, err := e.dialSub("tok", "?keepAlive=60000", 512)
		if err != nil {
			failed.Add(1)
			return
		}
		subs[i] = s
		if c, err := s.chunk(10 * time.Second); err != nil || string(c) != string(frameSubscribed) {
			failed.Add(1)
		}
	})
	defer func() {
		for _, s := range subs {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	require.Zero(t, failed.Load(), "all subscriptions open")
	require.Equal(t, n, e.srv.OpenSubscriptions())
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("heap+stack per subscription: %d bytes (both ends in this process: server goroutines, buffers and ticker; client socket and 512-byte reader)",
		(int64(ms.HeapAlloc+ms.StackInuse)-int64(before))/n)

	e.mustWrite("tok", `{"values":[{"key":"k","value":42,"datetime":"20200101000000"}]}`)
	want := `[{"key":"k","value":42,"datetime":"2020-01-01T00:00:00.000Z"}]`
	var got atomic.Int64
	parallel(n, 32, func(i int) {
		if c, err := subs[i].chunk(10 * time.Second); err == nil && string(c) == want {
			got.Add(1)
		}
	})
	assert.Equal(t, int64(n), got.Load(), "every subscriber received the broadcast")

	for i, s := range subs {
		s.conn.Close()
		subs[i] = nil
	}
	require.True(t, testkit.Eventually(t, "all subscriptions closed", func() bool { return e.srv.OpenSubscriptions() == 0 }))
}

// TestConcurrentWritersAndReaders hammers one thing from many goroutines
// (run it with -race) while the fault settings change underneath.
func TestConcurrentWritersAndReaders(t *testing.T) {
	const writers, perWriter, readers = 8, 40, 4
	e := setup(t, nil, WithThingTokens("tok", "tok2"))
	sub := e.subscribe("tok", "?keepAlive=10000")
	sub.mustChunk(5 * time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErrs atomic.Int64
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := e.try("GET", "things/tok/resources/k?limit=1000", "")
				if err != nil || (resp.status != 200 && resp.status != 404) {
					readErrs.Add(1)
					continue
				}
				if resp.status == 200 {
					var items []item
					if json.Unmarshal(resp.body, &items) != nil {
						readErrs.Add(1)
					}
				}
				_ = e.srv.StoredCount("tok", "k")
				_ = e.srv.Stored("tok2", "seeded")
				_ = e.srv.Settings("tok")
				_ = e.srv.Tokens()
			}
		}()
	}
	wg.Add(1)
	go func() { // fault settings flip while requests run
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				e.srv.SetFaults(Faults{})
				return
			case <-time.After(time.Millisecond):
			}
			e.srv.SetFaults(Faults{CoalesceFrames: i%2 == 0})
			_ = e.srv.Faults()
		}
	}()
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := 0; i < perWriter; i++ {
				body := fmt.Sprintf(`{"values":[{"key":"k","value":%d,"datetime":"2020-01-01T00:%02d:%02d.%03dZ"},{"key":"$settings.w%d","value":%d}]}`,
					w*1000+i, w, i%60, i, w, i)
				r, err := e.try("POST", "things/tok", body, "Content-Type", "application/json")
				if err != nil || r.status != 201 {
					readErrs.Add(1)
				}
				if i%10 == 0 {
					assert.NoError(t, e.srv.Seed("tok2", "seeded", Record{Value: json.RawMessage(`1`)}))
				}
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	assert.Zero(t, readErrs.Load())
	assert.Equal(t, writers*perWriter, e.srv.StoredCount("tok", "k"))
	assert.Equal(t, writers*perWriter/10, e.srv.StoredCount("tok2", "seeded"))
	assert.Len(t, e.srv.Settings("tok"), writers)
	items := e.readItems("tok", "k", "?limit=1000")
	require.Len(t, items, writers*perWriter)
	for i := 1; i < len(items); i++ {
		assert.GreaterOrEqual(t, items[i-1].Datetime, items[i].Datetime, "newest first")
	}
	// The subscriber saw every write (frames may be coalesced into chunks).
	seen := 0
	for seen < writers*perWriter {
		c := sub.data(5 * time.Second)
		dec := json.NewDecoder(strings.NewReader(c))
		for dec.More() {
			var frame []item
			require.NoError(t, dec.Decode(&frame))
			seen++
		}
	}
	assert.Equal(t, writers*perWriter, seen)
}

// BenchmarkReadPage reads one 1000-value page from the middle of a series
// through the HTTP handler; the cost must not grow with the series length.
func BenchmarkReadPage(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1k", 1000}, {"1M", 1_000_000}} {
		// Seed once per size: b.Run calls the function several times.
		s, err := New(WithThingTokens("tok"))
		require.NoError(b, err)
		base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		recs := make([]Record, size.n)
		for i := range recs {
			recs[i] = Record{Value: json.RawMessage(fmt.Sprintf("%d.5", i%1000)), Datetime: base.Add(time.Duration(i) * time.Second)}
		}
		require.NoError(b, s.Seed("tok", "temperature", recs...))
		recs = nil
		end := base.Add(time.Duration(size.n/2+500) * time.Second).Format(isoMillis)
		if size.n <= 1000 {
			end = base.Add(time.Duration(size.n) * time.Second).Format(isoMillis)
		}
		b.Run(size.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/v2/things/tok/resources/temperature?limit=1000&endDate="+end, nil)
			h := s.Handler()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || w.Body.Len() < 1000*40 {
					b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
				}
			}
		})
		s.Close()
	}
}

// BenchmarkWrite measures one single-value write through the handler.
func BenchmarkWrite(b *testing.B) {
	s, err := New(WithThingTokens("tok"))
	require.NoError(b, err)
	defer s.Close()
	h := s.Handler()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("POST", "/v2/things/tok", strings.NewReader(`{"values":[{"key":"k","value":21.5}]}`))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatal(w.Code)
		}
	}
}
