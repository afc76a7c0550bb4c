package spool

import "github.com/thethings-go/thethings/internal/fsys"

// FS is every file-system operation the spool makes: the real one ([OS])
// in production, a recording one (crashfs) in the crash tests, which
// rebuild from its log every state a power cut could leave.
type FS = fsys.FS

// File is an open spool file.
type File = fsys.File

// OS is the operating system's file system.
var OS = fsys.OS
