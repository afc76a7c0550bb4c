package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

func TestFailedValuesWalksJoinedErrors(t *testing.T) {
	t.Parallel()
	a := []thethings.Value{{Key: "a", Value: 1}}
	b := []thethings.Value{{Key: "b", Value: 2}, {Key: "b", Value: 3}}
	c := []thethings.Value{{Key: "c", Value: 4}}
	err := fmt.Errorf("flush: %w", errors.Join(
		&thethings.WriteError{Values: a, Unknown: true, Err: thethings.ErrOutcomeUnknown},
		&thethings.WriteError{Values: b, Err: errors.New("refused")},
		errors.Join(errors.New("unrelated"), &thethings.WriteError{Values: c, Err: errors.New("refused")}),
	))
	notWritten, unknown := thethings.FailedValues(err)
	assert.Equal(t, append(append([]thethings.Value{}, b...), c...), notWritten)
	assert.Equal(t, a, unknown)

	notWritten, unknown = thethings.FailedValues(errors.New("no write error"))
	assert.Nil(t, notWritten)
	assert.Nil(t, unknown)
	notWritten, unknown = thethings.FailedValues(nil)
	assert.Nil(t, notWritten)
	assert.Nil(t, unknown)
}

// A split write that fails in its second request: FailedValues finds the
// values of both WriteErrors, where errors.As finds the first only.
func TestFailedValuesOfASplitWrite(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}), thethings.WithRetry(thethings.NoRetries))
	err := c.Write(context.Background(), intValues("k", 0, 250))
	notWritten, unknown := thethings.FailedValues(err)
	assert.Len(t, unknown, 100, "the second request's values")
	assert.Len(t, notWritten, 50, "the third request's values")
}

// Every error says "thethings:" once, not once per layer.
func TestErrorsSayPrefixOnce(t *testing.T) {
	t.Parallel()
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"date":"not a date"}`)
	}), thethings.WithRetry(thethings.NoRetries))
	ctx := context.Background()
	var errs []error
	add := func(err error) {
		require.Error(t, err)
		errs = append(errs, err)
	}
	add(c.Write(ctx, []thethings.Value{{Key: "temp°C", Value: 1}}))
	add(c.Write(ctx, []thethings.Value{{Key: "k", Value: 1, Geo: &thethings.Geo{Lat: 100}}}))
	_, err := c.Read(ctx, "a b", nil)
	add(err)
	_, err = c.Read(ctx, "k", &thethings.ReadOptions{Limit: 5000})
	add(err)
	_, err = c.Read(ctx, "k", &thethings.ReadOptions{Cursor: "garbage"})
	add(err)
	_, err = c.ServerTime(ctx)
	add(err)
	_, err = thethings.NewClient(sentinelToken, thethings.WithBaseURL("ftp://x"))
	add(err)
	add(c.SetSetting(ctx, "a..b", 1))
	_, sub := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"status":"success","message":"subscribed"}[{"key":5}]`)
	}))
	before := len(errs)
	for _, err := range sub.Subscribe(ctx, thethings.WithReconnect(0)) {
		add(err)
	}
	// The malformed item is reported and the stream goes on, until the
	// server closes it.
	require.Len(t, errs, before+2)
	assert.ErrorIs(t, errs[before], thethings.ErrInvalidValue)
	for _, err := range errs {
		assert.Equal(t, 1, strings.Count(err.Error(), "thethings:"), "%q", err)
		assert.True(t, strings.HasPrefix(err.Error(), "thethings: "), "%q", err)
	}
}
