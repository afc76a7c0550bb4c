package ota

import (
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"fmt"
	"io"
)

// checkRuns refuses a payload that cannot run where the program runs, the
// update that would leave a device unable to start, with nothing to roll
// back from (the new program never reaches Boot): when the target is an
// executable (ELF, Mach-O, PE), the payload must be one of the same
// format, byte order and word size, for the same processor. A target in no
// such format (a script) is not checked; universal Mach-O files are not
// either.
func checkRuns(target, payload io.ReaderAt) error {
	want := execFormat(target)
	if want == "" || want == machoUniversal {
		return nil
	}
	got := execFormat(payload)
	if got == machoUniversal {
		return nil
	}
	if got == "" {
		got = "no executable"
	}
	if got != want {
		return fmt.Errorf("thethings: ota: the payload is %s, the program %s: %w", got, want, errCannotRun)
	}
	return nil
}

// errCannotRun is the error of a payload that would not start.
var errCannotRun = fmt.Errorf("it would not start: %w", ErrInvalidBundle)

const machoUniversal = "a universal Mach-O executable"

// execFormat names the executable format and processor of r, or is "".
func execFormat(r io.ReaderAt) string {
	if f, err := elf.NewFile(r); err == nil {
		return fmt.Sprintf("an ELF executable (%s, %s, %s)", f.Class, f.Data, f.Machine)
	}
	if f, err := macho.NewFile(r); err == nil {
		return fmt.Sprintf("a Mach-O executable (%s, %s)", f.Cpu, f.ByteOrder)
	}
	if _, err := macho.NewFatFile(r); err == nil {
		return machoUniversal
	}
	if f, err := pe.NewFile(r); err == nil {
		return fmt.Sprintf("a PE executable (machine %#x)", f.Machine)
	}
	return ""
}
