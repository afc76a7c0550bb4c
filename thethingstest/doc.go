// Package thethingstest is a local fake of the thethings.iO
// device REST API (v2): the same routes, answers, error bodies and quirks
// as the platform, with ground truth to assert on and faults to inject. Use
// it to test code built on the SDK, or any other client of the API, without
// the real platform. It uses only the standard library, except for the
// embedded MQTT broker of WithMQTT (mochi-mqtt).
//
// In a test, NewServer starts a server on a free loopback port and closes
// it when the test ends; give its URL and a thing token to the client under
// test:
//
//	srv := thethingstest.NewServer(t)
//	c, err := thethings.NewClient(srv.Tokens()[0], thethings.WithBaseURL(srv.URL()))
//	// ... run the code under test with c ...
//	if got := srv.StoredCount(srv.Tokens()[0], "temperature"); got != 10 {
//		t.Errorf("stored %d values, want 10", got)
//	}
//
// A program (a fake platform for another language, a demo) calls New, then
// Start and Close, or Serve, or mounts Handler on its own server.
//
// # What it emulates
//
// All paths live under /v2 and every answer is JSON
// (Content-Type: application/json):
//
//	GET  /v2/                                  401 {"status":"error","code":401,"message":"Invalid session token"}
//	POST /v2/things (or /v2/things/)           activate: {"activationCode":..,"productId":..}
//	POST /v2/things/{token}                    write: {"values":[{"key":..,"value":..,"geo":..,"datetime":..}]}
//	GET  /v2/things/{token}                    subscribe: chunked stream of JSON frames
//	GET  /v2/things/{token}/resources/{key}    read: ?limit=&startDate=&endDate=
//	GET  /v2/utils/date                        ?thingToken=&format=UTC|unix_timestamp
//	GET  /v2/things/{token}/resources          {"resources":[keys...]}
//	GET  /v2/things/{token}/firmwares/latest   firmwares added with AddFirmware
//	GET  /v2/things/{token}/firmwares/download/{id}  the file; Range: bytes=N-
//	POST /v2/things/{token}/code/functions/{name}    functions of WithFunction
//
// Status codes, bodies and messages follow the platform's device-development
// guide; where the guide prints an error body without "code" (activation
// code not found, unknown thing token, resource not found, unknown thing on
// subscribe) that exact body is sent. Other errors use the platform's
// envelope {"status":"error","code":<status>,"message":...}: 400 for invalid
// input (the message names the offending key or parameter), 404
// {"message":"not found"} for unknown paths, 405 with an Allow header for a
// wrong method, 413 for a body over the limit (WithMaxBodyBytes), 415 for
// a POST whose Content-Type is set but is not application/json.
//
// Writes are validated whole before anything is stored. Keys are letters,
// digits, '.', '-' and '_', or a magic key: $geo (current position, saved
// as a GeoJSON point; accepts GeoJSON, [long, lat], or null with a geo
// attribute), $settings (an object that replaces all settings) and
// $settings.<path> (sets one dotted path). Magic keys hold current state,
// not history. Datetimes are accepted as YYYYMMDDHHmmss, YYYYMMDDTHHmmss or
// ISO 8601 (optional fraction, optional zone; no zone means UTC) and kept
// in UTC with millisecond precision. Query switches store=false (broadcast
// only) and broadcast=false (store only) are honoured.
//
// Reads return newest first (values with the same millisecond: most
// recently inserted first), limit defaults to 1 and is clamped to 1000,
// startDate is inclusive. Storage keeps each key sorted, so any page costs
// about the same at a million stored values as at a thousand.
//
// A subscription answers 200 with a chunked body whose first frame is
// {"status":"success","message":"subscribed"}, then {} every keepAlive
// milliseconds (WithDefaultKeepAlive when absent) and, for every broadcast
// write of that thing, one JSON array with that request's items in request
// order. Each frame is its own chunk with no separator. A subscriber that
// falls 256 frames behind is disconnected instead of blocking writers.
//
// With WithMQTT the server also runs the platform's MQTT device API on an
// embedded broker (MQTTURL): a publish on v2/things/{token} is a write, a
// write reaches subscribers of that topic as the stream's data array, and
// subscribing to v2/activations/{code}/{random} activates a code.
// RestartMQTT drops every MQTT connection to test reconnects.
//
// # Switches: where sources disagree
//
// The platform's guide is followed by default; where it contradicts itself
// or published client code, the other behaviour is available as a switch:
//
//   - WithEndDateInclusive: the guide's 2300-values pagination example
//     shows the next page starting strictly before the previous page's last
//     datetime, so endDate is exclusive by default. The Python library
//     pages as if it were inclusive; switch it on to check that a client
//     copes with a repeated boundary value.
//   - WithLegacyWriteResponse: the guide prints two write answers,
//     {"status":"Success","message":"Created"} after its plain write example
//     and {"status":"created"} after its magic-resource writes; CoAP replies
//     and client test suites show the latter, so it is the default (with
//     201). The switch sends the former for every write so clients can be
//     tested against both.
//   - WithStreamItemFields: no source shows stream items with more than
//     "key" and "value"; by default the emulator adds "datetime" (and "geo")
//     because they are useful and tolerant decoders ignore them; pass false
//     to get the bare form.
//
// Choices where no source is explicit:
//
//   - An activation code bound to a product (ActivationCode.ProductID)
//     accepts a request without productId, as the guide says productId is
//     unnecessary for single-product accounts; a different productId fails.
//   - A read of $settings before it was ever written answers
//     [{"key":"$settings","value":{}}]; $settings.<path> and $geo answer 404
//     resource not found until set. $settings keeps numbers exact.
//   - A read of a key that could never be written (invalid characters) is
//     404 resource not found, like a key never written.
//   - geo coordinates are accepted as numbers or numeric strings (the
//     platform's Python library sends strings).
//   - keepAlive must be a positive number of milliseconds; values above 24h
//     are clamped.
//   - A $settings path has at most 32 segments and a written value nests
//     at most 32 levels of arrays and objects; deeper is refused with 400.
//     A request line and headers over 64 KiB are refused with 431, an MQTT
//     packet larger than the body limit plus room for its topic closes its
//     connection before it is read.
//   - A POST whose Content-Type is set to something other than
//     application/json is refused with 415 (curl -d without -H sends a form
//     type); a missing Content-Type is accepted.
//
// # Faults
//
// Faults (WithFaults, Server.SetFaults) make the emulator misbehave in
// repeatable ways: fixed latency, every Nth request answered 503 or 429
// (with or without Retry-After), every Nth write dropped without answer
// (stored or not) or stored then answered 500, 502, 503 or 504 as by a
// proxy, streams cut after a delay, keep-alives stopped, frames split into
// single bytes or coalesced into one chunk. See Faults for the counting
// order.
//
// # Data directory
//
// By default everything is in memory and gone on Close. With WithDataDir
// (thethings emulator -data DIR) the things, tokens, activation codes,
// values, settings and positions are kept in a directory, and a Server
// started later on it serves them again. A change is on disk before it is
// acknowledged, so a crash, a kill -9 or a power cut loses nothing a client
// was told was stored.
//
// The directory holds one append-only log of length- and CRC-framed JSON
// records, fsync'd before each answer (concurrent writes share one fsync),
// replayed on start; a record torn by a crash fails its length or CRC and
// is cut off. An embedded database would have been a dependency for every
// test that imports this package, for data that is only ever appended and
// read whole at start, which a log does in about a hundred lines; replaying
// a million stored values takes seconds (see BENCHMARKS.md), which suits a
// fake. Replayed values are validated by the same code as a write, so a
// record means what a write of it would.
//
// # Ground truth
//
// Requests, StoredCount, Stored, Keys, Duplicates, OpenSubscriptions,
// Settings and Location expose what the emulator saw and stored, so tests
// can assert on the effect of a client's retries and drops. Seed loads data
// without HTTP. With WithControlAPI the same ground truth, and the faults,
// are served over HTTP under /_thethingstest/, for a Server running in
// another process.
package thethingstest
