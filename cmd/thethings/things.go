package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/thethings-go/thethings"
)

// runActivate prints the new thing token on stdout: the one place the CLI
// prints a token whole, since the platform shows it only in this answer.
func runActivate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "activate")
	fs.Func("base-url", "API base URL (default $THETHINGS_BASE_URL)", func(s string) error { e.baseURL = s; return nil })
	product := fs.String("product", "", "product ID, when the account has several products")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, err := thethings.Activate(ctx, pos[0], *product, e.options()...)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, c.ThingToken())
	if id := c.ThingID(); id != "" {
		fmt.Fprintf(e.stderr, "thethings activate: thing %s activated; save its token (above): it is shown only now\n", id)
	} else {
		fmt.Fprintf(e.stderr, "thethings activate: thing activated; save its token (above): it is shown only now\n")
	}
	return nil
}

func runTime(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "time")
	clientFlags(e, fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	t, err := c.ServerTime(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, t.UTC().Format(time.RFC3339Nano))
	return nil
}

func runGeo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "geo")
	clientFlags(e, fs)
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	var g thethings.Geo
	if len(pos) == 1 {
		if g, err = parseGeo(pos[0]); err != nil {
			return usageErr("%v", err)
		}
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		return c.SetLocation(ctx, g)
	}
	if g, err = c.Location(ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s,%s\n", strconv.FormatFloat(g.Lat, 'f', -1, 64), strconv.FormatFloat(g.Long, 'f', -1, 64))
	return nil
}

func runSettings(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "settings")
	clientFlags(e, fs)
	pos, err := parse(fs, args, 0, 3)
	if err != nil {
		return err
	}
	var op, path string
	if len(pos) > 0 {
		op = pos[0]
	}
	switch {
	case op == "":
	case op == "get" && len(pos) == 2, op == "set" && len(pos) == 3:
		path = pos[1]
		if err := checkPath(path); err != nil {
			return usageErr("%v", err)
		}
	case op == "get":
		return usageErr("usage: settings get PATH")
	case op == "set":
		return usageErr("usage: settings set PATH VALUE")
	default:
		return usageErr("unknown settings operation %q: want get PATH or set PATH VALUE", op)
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	var v any
	switch op {
	case "set":
		return c.SetSetting(ctx, path, parseValue(pos[2]))
	case "get":
		var raw json.RawMessage
		if err := c.Setting(ctx, path, &raw); err != nil {
			return err
		}
		v = raw
	default:
		if v, err = c.Settings(ctx); err != nil {
			return err
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// checkPath checks a dotted settings path: keys joined by '.'.
func checkPath(path string) error {
	if path == "" {
		return fmt.Errorf("empty settings path")
	}
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' {
			if i == start {
				return fmt.Errorf("settings path %q has an empty segment", path)
			}
			start = i + 1
			continue
		}
		if err := checkKey(path[i : i+1]); err != nil {
			return fmt.Errorf("settings path %q: character %q not allowed (letters, digits, '-', '_', '.' between names)", path, path[i])
		}
	}
	return nil
}
