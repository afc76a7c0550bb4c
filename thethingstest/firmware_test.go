package thethingstest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFirmwareList(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	r := e.get("things/tok/firmwares/latest")
	require.Equal(t, 200, r.status)
	assert.JSONEq(t, `{"status":"success","firmwares":[]}`, string(r.body))
	a := e.srv.AddFirmware("3", []byte("x"))
	b := e.srv.AddFirmware("1.2.0", []byte("y"))
	assert.Len(t, a, 24)
	r = e.get("things/tok/firmwares/latest")
	assert.JSONEq(t, `{"status":"success","firmwares":[{"_id":"`+a+`","version":3},{"_id":"`+b+`","version":"1.2.0"}]}`, string(r.body))
	assert.Equal(t, 404, e.get("things/nobody/firmwares/latest").status)
	assert.Equal(t, 3, e.srv.Requests(RouteFirmwares))
}

func TestFirmwareDownloadRange(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	id := e.srv.AddFirmware("3", []byte("0123456789"))
	r := e.get("things/tok/firmwares/download/" + id)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "0123456789", string(r.body))
	assert.Equal(t, "application/octet-stream", r.header.Get("Content-Type"))
	etag := r.header.Get("ETag")
	require.NotEmpty(t, etag)

	r = e.do("GET", "things/tok/firmwares/download/"+id, "", "Range", "bytes=4-", "If-Range", etag)
	assert.Equal(t, 206, r.status)
	assert.Equal(t, "bytes 4-9/10", r.header.Get("Content-Range"))
	assert.Equal(t, "456789", string(r.body))

	r = e.do("GET", "things/tok/firmwares/download/"+id, "", "Range", "bytes=4-", "If-Range", `"another"`)
	assert.Equal(t, 200, r.status, "another file: the whole of this one")
	assert.Equal(t, 416, e.do("GET", "things/tok/firmwares/download/"+id, "", "Range", "bytes=10-").status)
	assert.Equal(t, 404, e.get("things/tok/firmwares/download/unknown").status)
	assert.Equal(t, 5, e.srv.Requests(RouteFirmwareDownload))
}

func TestFirmwareDownloadCut(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithFirmwareFaults(FirmwareFaults{CutAfter: 4}))
	id := e.srv.AddFirmware("3", []byte("0123456789"))
	_, err := e.try("GET", "things/tok/firmwares/download/"+id, "")
	require.Error(t, err, "the body is cut")
	e.srv.SetFirmwareFaults(FirmwareFaults{IgnoreRange: true})
	r := e.do("GET", "things/tok/firmwares/download/"+id, "", "Range", "bytes=4-")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "0123456789", string(r.body))
	_, err = New(WithFirmwareFaults(FirmwareFaults{CutAfter: -1}))
	assert.Error(t, err)
}

func TestFunctions(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"),
		WithFunction("echo", func(_ context.Context, p json.RawMessage) (any, error) { return p, nil }),
		WithFunction("fail", func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("no luck") }))
	r := e.post("things/tok/code/functions/echo", `{"params":{"a":[1,2]}}`)
	require.Equal(t, 200, r.status)
	assert.JSONEq(t, `{"a":[1,2]}`, string(r.body))
	r = e.post("things/tok/code/functions/echo", ``)
	assert.Equal(t, "null", string(r.body), "no params: null")
	r = e.post("things/tok/code/functions/fail", `{"params":1}`)
	assert.Equal(t, 500, r.status)
	assert.Contains(t, string(r.body), "no luck")
	assert.Equal(t, 404, e.post("things/tok/code/functions/none", `{}`).status)
	assert.Equal(t, 400, e.post("things/tok/code/functions/echo", `{`).status)
	assert.Equal(t, 405, e.get("things/tok/code/functions/echo").status)
	assert.Equal(t, 2, e.srv.Requests(FunctionRoute("echo")))
	assert.Equal(t, 1, e.srv.Requests(FunctionRoute("fail")))
	assert.Equal(t, 5, e.srv.Requests(RouteFunction))
	_, err := New(WithFunction("a/b", func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
	assert.Error(t, err)
}

func TestResourcesList(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	e.mustWrite("tok", `{"values":[{"key":"b","value":1},{"key":"a","value":2},{"key":"$settings.x","value":3}]}`)
	r := e.get("things/tok/resources")
	require.Equal(t, 200, r.status)
	assert.JSONEq(t, `{"resources":["a","b"]}`, string(r.body))
	assert.Equal(t, 404, e.get("things/nobody/resources").status)
}
