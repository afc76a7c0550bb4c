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
//	{"phase":"trial","from":"1","to":"2","sha256":"<new target>","boots":0,"unsent":[...]}
//
// Apply downloads and verifies the bundle into a temporary file in the
// target's directory, fsyncs it, checks that it can run where the target
// runs (when the target is an ELF, Mach-O or PE executable, the new file
// must be one for the same processor: a program that cannot start never
// reaches Boot, so nothing would roll it back), makes target+".previous" a
// hard link to (or an fsync'd copy of) the target, writes the state {phase
// trial, boots 0}, renames the new file over the target and fsyncs the
// directory. The target is only ever replaced by a rename, never written,
// truncated or removed in place, so at every instant its name points to
// one whole program.
//
// Boot, at every start, reads the state. No state, or no trial: nothing to
// do. Phase trial with boots 0 and the target's SHA-256 equal to the new
// version's: this is the trial run, boots becomes 1. Boots 1: the trial
// run ended without Commit, so target+".previous" is renamed over the
// target and Boot returns rolledBack (the running process is the failed
// version: exit so a supervisor starts the old one, or re-execute); the
// state becomes "rejected", and that version is not applied again (a newer
// one is). A version whose bundle Apply refused for good (signature,
// version, size, a payload that would not start) is rejected the same way,
// so that a fleet does not download a bad bundle at every check. A target
// whose SHA-256 is not the new version's means Apply was cut before its
// rename (boots 0) or a rollback after its rename (boots 1); the state is
// corrected, nothing is renamed. A trial with no previous version left to
// go back to ends with the new version in place, reported "failed", so
// that a newer version can still be applied. Commit, by an Updater of the
// version on trial (the new program, running), ends the trial; the old
// program, still running after Apply, cannot commit the new one.
//
// The tests cut the power after every file operation of Apply, Boot and
// Commit, keeping only what was fsync'd (any subset of the directory
// changes since the last directory fsync, every file's data as of its
// last fsync; or kill -9 it, which keeps everything), and start the
// device on each image: the target runs, the
// previous version is there while a new one is on trial, a trial ends,
// and no report is lost.
//
// Every step writes a value under the report key ("firmware" by default)
// with the fields "version", "state" ("applied", "committed",
// "rolled-back", "failed") and, on failure, "error". A report the
// platform did not get, and those Boot makes (a rollback, an interrupted
// update), wait in the state's "unsent" list, the 16 newest, through
// later updates and restarts, and go out, in order, at the next Check. A
// report may be sent twice when the power fails just after it was sent;
// none is lost.
//
// A state file that cannot be read as JSON (a failing card) reads as no
// update pending, with a "failed" report saying so, and is replaced at
// the next write: it never stops Boot and Apply for good.
//
// One process manages a target at a time.
//
// # Windows
//
// A running program cannot be replaced by a rename on Windows, and
// renaming it aside first leaves an instant with no program at the
// target, which a power cut would make permanent: Apply refuses a target
// that is the running executable (an error matching
// errors.ErrUnsupported) before it downloads anything. Update instead a
// program file that a small launcher starts (WithTarget). Windows also
// cannot fsync a directory; that step is skipped there, so a power cut
// soon after a rename may undo it (the target still holds a whole
// program: the old one).
package ota
