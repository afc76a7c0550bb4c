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
	fmt.Fprintln(e.stdout, clean(c.ThingToken()))
	if id := c.ThingID(); id != "" {
		fmt.Fprintf(e.stderr, "thethings activate: thing %s activated; save its token (above): it is shown only now\n", clean(id))
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
	asJSON := fs.Bool("json", false, "set: refuse a VALUE that is not JSON instead of storing it as a string")
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
		path = pos[1] // Setting and SetSetting check it before any request
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
		val, err := parseValue(pos[2], *asJSON)
		if err != nil {
			return err
		}
		return c.SetSetting(ctx, path, val)
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
	return newJSONWriter(e.stdout).line(v)
}
