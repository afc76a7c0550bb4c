// Package ota updates a device's program from firmware files the
// thethings.iO platform serves, safely: only a file signed with the
// vendor's key is ever run, the swap is atomic, a new version runs on
// trial, and a trial that does not commit is rolled back at the next
// start. A power cut or kill -9 at any instant of [Updater.Apply], [Boot]
// or [Updater.Commit] leaves a target that runs: the old version or the
// new one, never a mix or nothing.
//
// The platform stores any file and gives no checksum, so the vendor signs
// what it uploads:
//
//	pub, priv, _ := ota.GenerateKey()           // once; priv stays with the vendor
//	ota.Sign(bundleFile, programFile, "2", priv) // then upload bundleFile as version 2
//
// and the device holds the public key:
//
//	if rolledBack, err := ota.Boot(self); rolledBack { ... exit or re-exec: the old version runs again }
//	u, _ := ota.NewUpdater(client, pub, "1")
//	if applied, err := u.Apply(ctx); applied { ... restart into the new version }
//	// in the new version, once it runs well:
//	u.Commit()
//
// # Signed bundle format (version 1)
//
// A bundle is one file:
//
//	offset  size  field
//	0       4     magic "TTFW"
//	4       1     format version, 1
//	5       4     manifest length n, big-endian uint32, 1 <= n <= 65536
//	9       n     manifest: JSON {"version":"2","size":1234,"sha256":"<64 hex>","created":"<RFC 3339>"}
//	9+n     64    Ed25519 signature of "thethings-ota-bundle-v1\x00" followed by bytes 0 to 9+n
//	73+n    size  payload (the program), last: nothing may follow it
//
// [Verify] reads the header and the manifest (never more than 64 KiB),
// checks the signature before it reads a byte of the payload, then streams
// the payload to its destination while hashing it, and fails when the
// payload is shorter or longer than the manifest says or its SHA-256
// differs. The signature covers the header too, and the context string
// keeps it from being valid for anything but a bundle of this format. No
// bundle makes Verify allocate more than the manifest's bound.
//
// Why Ed25519 from the standard library and not minisign: minisign signs
// a whole file (or its BLAKE2b hash) and keeps the signature in a second
// file, so the device could trust the size and version only after reading
// the whole payload, and would need a third-party parser and BLAKE2b. A
// signed manifest in front of the payload gives the device the size and
// digest before the first payload byte, in one file, with crypto/ed25519,
// crypto/sha256 and encoding/json alone; the key is the same Ed25519 key
// minisign would use.
//
// # Trial state
//
// Beside the target (the program file, os.Executable() by default) the
// Updater keeps target+".previous", the version that ran before the last
// update, and target+".ota-state", a small JSON file that is always
// replaced whole (written to a temporary file, fsync'd, renamed over, and
// the directory fsync'd):
//
//	{"phase":"trial","from":"1","to":"2","sha256":"<new target>","boots":0}
//
// Apply downloads and verifies the bundle into a temporary file in the
// target's directory, fsyncs it, makes target+".previous" a hard link to
// (or an fsync'd copy of) the target, writes the state {phase trial, boots
// 0}, renames the new file over the target and fsyncs the directory. The
// target is only ever replaced by a rename, never written, truncated or
// removed in place, so at every instant its name points to one whole
// program.
//
// Boot, at every start, reads the state. No state: nothing to do. Phase
// trial with boots 0 and the target's SHA-256 equal to the new version's:
// this is the trial run, boots becomes 1. Boots 1: the trial run ended
// without Commit, so target+".previous" is renamed over the target and
// Boot returns rolledBack (the running process is the failed version: exit
// so a supervisor starts the old one, or re-execute). A target whose
// SHA-256 is not the new version's means Apply was cut before its rename
// (boots 0) or a rollback after its rename (boots 1); the state is
// corrected, nothing is renamed. Commit removes the state. A rollback or
// an interrupted Apply leaves the state as a report for the next Updater
// to send once it reaches the platform; a rolled-back version is not
// applied again (a newer one is).
//
// Every step writes a value under the report key ("firmware" by default)
// with the fields "version", "state" ("applied", "committed",
// "rolled-back", "failed") and, on failure, "error".
//
// One process manages a target at a time. The directory sync is skipped
// on Windows, where a directory cannot be opened for it.
package ota
