package thethings_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestActivateAgainstEmulator(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t, thethingstest.WithActivationCodes(
		thethingstest.ActivationCode{Code: "free-code"},
		thethingstest.ActivationCode{Code: "product-code", ProductID: "prod-1"},
	))
	ctx := context.Background()
	base := thethings.WithBaseURL(srv.URL())

	c, err := thethings.Activate(ctx, "free-code", "", base)
	require.NoError(t, err)
	assert.Regexp(t, `^[A-Za-z0-9_-]{43}$`, c.ThingToken())
	assert.NotEmpty(t, c.ThingID())
	assert.Contains(t, srv.Tokens(), c.ThingToken())

	// The new thing works at once.
	_, err = c.ServerTime(ctx)
	require.NoError(t, err)

	// A code activates once.
	_, err = thethings.Activate(ctx, "free-code", "", base)
	assert.ErrorIs(t, err, thethings.ErrActivationCodeNotFound)

	// A code bound to a product refuses another product, then activates with its own.
	_, err = thethings.Activate(ctx, "product-code", "other", base)
	assert.ErrorIs(t, err, thethings.ErrActivationCodeNotFound)
	c2, err := thethings.Activate(ctx, "product-code", "prod-1", base)
	require.NoError(t, err)
	assert.NotEqual(t, c.ThingToken(), c2.ThingToken())

	_, err = thethings.Activate(ctx, "never-issued", "", base)
	var apiErr *thethings.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 400, apiErr.StatusCode)
	assert.Equal(t, "activation code not found", apiErr.Message)
	assert.Equal(t, 5, srv.Requests(thethingstest.RouteActivate), "activation is sent once per call")
}

func TestServerTimeAgainstEmulator(t *testing.T) {
	t.Parallel()
	frozen := time.Date(2017, 5, 12, 11, 7, 53, 176_000_000, time.UTC)
	srv, c := setup(t, thethingstest.WithClock(func() time.Time { return frozen }))
	got, err := c.ServerTime(context.Background())
	require.NoError(t, err)
	assert.True(t, frozen.Equal(got), "got %s", got)

	unknown, err := thethings.NewClient("no-such-thing", thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	_, err = unknown.ServerTime(context.Background())
	assert.ErrorIs(t, err, thethings.ErrThingNotFound)
	assert.NotContains(t, err.Error(), "no-such-thing")
}

func TestRootIsUnauthorized(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	resp, err := http.Get(srv.URL())
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// Many clients share one *http.Client and run concurrently.
func TestClientsShareHTTPClient(t *testing.T) {
	t.Parallel()
	tokens := []string{"thing-a", "thing-b", "thing-c", "thing-d"}
	srv, _ := setup(t, thethingstest.WithThingTokens(tokens...))
	shared := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for _, tok := range tokens {
		c, err := thethings.NewClient(tok, thethings.WithBaseURL(srv.URL()), thethings.WithHTTPClient(shared))
		require.NoError(t, err)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					_, err := c.ServerTime(context.Background())
					assert.NoError(t, err)
				}
			}()
		}
	}
	wg.Wait()
	shared.CloseIdleConnections()
	assert.Equal(t, 200, srv.Requests(thethingstest.RouteDate))
}
