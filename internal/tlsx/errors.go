package tlsx

import (
	"fmt"
)

// FileError says that a file named in the options could not be read or does
// not hold what it should. What is the option's name ("cafile", "certfile",
// "keyfile", "keyfile_password_file", "capath").
type FileError struct {
	What string
	Path string
	Err  error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("tlsx: %s %s: %v", e.What, e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// CAFileIsDirError says that cafile names a directory: it belongs in capath.
type CAFileIsDirError struct{ Path string }

func (e *CAFileIsDirError) Error() string {
	return fmt.Sprintf("tlsx: cafile %s is a directory; a directory of CA certificates goes in capath", e.Path)
}

// CAPathIsFileError says that capath names a file: it belongs in cafile.
type CAPathIsFileError struct{ Path string }

func (e *CAPathIsFileError) Error() string {
	return fmt.Sprintf("tlsx: capath %s is a file, not a directory; a single CA file goes in cafile", e.Path)
}

// KeyMismatchError says that the private key is not the key of the
// certificate it is paired with.
type KeyMismatchError struct {
	CertFile, KeyFile string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("tlsx: keyfile %s is not the private key of certfile %s", e.KeyFile, e.CertFile)
}

// KeyPasswordError says that an encrypted key could not be decrypted: the
// password is missing (no keyfile_password_file) or wrong.
type KeyPasswordError struct {
	KeyFile string
	Missing bool
	Err     error
}

func (e *KeyPasswordError) Error() string {
	if e.Missing {
		return fmt.Sprintf("tlsx: keyfile %s is encrypted and no keyfile_password_file is set", e.KeyFile)
	}
	if e.Err != nil {
		return fmt.Sprintf("tlsx: keyfile %s: wrong password (%v)", e.KeyFile, e.Err)
	}
	return fmt.Sprintf("tlsx: keyfile %s: wrong password", e.KeyFile)
}

func (e *KeyPasswordError) Unwrap() error { return e.Err }
