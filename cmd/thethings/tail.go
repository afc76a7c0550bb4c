package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

func runTail(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tail")
	clientFlags(e, fs)
	keysFlag := fs.String("keys", "", "print only these keys, comma-separated (default: all)")
	backfill := fs.Bool("backfill", false, "after a reconnect, also print what -keys received meanwhile (needs -keys)")
	count := fs.Int("n", 0, "exit after this many values (default: run until interrupted)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	var keys []string
	for _, k := range strings.Split(*keysFlag, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if err := wire.ValidateKey(k, false); err != nil {
			return usageErr("-keys: %v", err)
		}
		keys = append(keys, k)
	}
	if *backfill && len(keys) == 0 {
		return usageErr("-backfill needs -keys: the keys whose history fills the gaps")
	}
	if *count < 0 {
		return usageErr("-n %d: must not be negative", *count)
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	opts := []thethings.SubscribeOption{thethings.WithStateHandler(func(s thethings.State, cause error) {
		if cause != nil {
			fmt.Fprintf(e.stderr, "thethings tail: %s: %s\n", s, errorLine(strings.TrimPrefix(cause.Error(), "thethings: ")))
		} else {
			fmt.Fprintf(e.stderr, "thethings tail: %s\n", s)
		}
	})}
	if *backfill {
		opts = append(opts, thethings.WithBackfill(keys...))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bw := bufio.NewWriter(e.stdout)
	out := newJSONWriter(bw)
	n := 0
	for msg, err := range c.Subscribe(ctx, opts...) {
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of tail
			}
			return err
		}
		for _, v := range msg.Values {
			if len(keys) > 0 && !slices.Contains(keys, v.Key) {
				continue
			}
			if err := out.value(v, msg.Backfill); err != nil {
				return err
			}
			n++
			if *count > 0 && n == *count {
				return bw.Flush()
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
