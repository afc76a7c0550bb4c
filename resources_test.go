package thethings_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/emulator"
)

// readsEmulator starts an emulator with sentinelToken and a client for it.
func readsEmulator(t testing.TB, opts ...emulator.Option) (*emulator.Server, *thethings.Client) {
	t.Helper()
	srv := emulator.New(append([]emulator.Option{emulator.WithThingTokens(sentinelToken)}, opts...)...)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Close() })
	c, err := thethings.NewClient(sentinelToken,
		thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 0}))
	require.NoError(t, err)
	return srv, c
}

// seedNumbers stores n values i = 0..n-1 under key, one second apart from base.
func seedNumbers(t testing.TB, srv *emulator.Server, key string, base time.Time, n int) {
	t.Helper()
	recs := make([]emulator.Record, n)
	for i := range recs {
		recs[i] = emulator.Record{Value: json.RawMessage(fmt.Sprint(i)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(t, srv.Seed(sentinelToken, key, recs...))
}

func TestValuesSmoke(t *testing.T) {
	t.Parallel()
	srv, c := readsEmulator(t)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	seedNumbers(t, srv, "temp", base, 2500)
	n := 0
	for v, err := range c.Values(context.Background(), "temp", nil) {
		require.NoError(t, err)
		i, err := v.Int64()
		require.NoError(t, err)
		require.EqualValues(t, 2499-n, i)
		require.Equal(t, "temp", v.Key)
		require.True(t, v.Datetime.Equal(base.Add(time.Duration(i)*time.Second)))
		n++
	}
	assert.Equal(t, 2500, n)
	assert.Equal(t, 3, srv.Requests("read"))

	p, err := c.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 10})
	require.NoError(t, err)
	require.Len(t, p.Values, 10)
	require.NotEmpty(t, p.Next)
	p2, err := c.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 10, Cursor: p.Next})
	require.NoError(t, err)
	require.Len(t, p2.Values, 10)
	i, _ := p2.Values[0].Int64()
	assert.EqualValues(t, 2489, i)
}
