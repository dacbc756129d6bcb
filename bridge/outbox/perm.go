package outbox

import (
	"fmt"
	"os"
	"path/filepath"
)

// Queued payloads are private: the outbox directory is 0700 and its files
// 0600, whatever the umask or the mode data_dir was given; files and a
// directory left looser by an earlier version are tightened at Open.
const (
	dirPerm  os.FileMode = 0o700
	filePerm os.FileMode = 0o600
)

// makePrivateDir creates dir (and its parents, durably) and makes dir
// itself 0700 and every file in it 0600.
func makePrivateDir(dir string) error {
	if err := mkdirAllSync(dir); err != nil {
		return fmt.Errorf("outbox: create dir: %w", err)
	}
	if err := tighten(dir, dirPerm); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("outbox: read dir: %w", err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := tighten(filepath.Join(dir, e.Name()), filePerm); err != nil {
				return err
			}
		}
	}
	return nil
}

// tighten removes from path's mode every permission bit not in perm.
func tighten(path string, perm os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if fi.Mode().Perm()&^perm == 0 {
		return nil
	}
	if err := os.Chmod(path, fi.Mode().Perm()&perm); err != nil {
		return fmt.Errorf("outbox: make %s private: %w", path, err)
	}
	return nil
}
