package powerfs

import (
	"sort"
	"syscall"
	"time"
)

// Attr is what Stat reports of a node.
type Attr struct {
	Ino   uint64
	Dir   bool
	Mode  uint32 // permission bits
	Size  int64
	Nlink int
	Mtime time.Time
}

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name string
	Ino  uint64
	Dir  bool
}

func (m *Model) attrLocked(n *node) Attr {
	a := Attr{Ino: n.ino, Dir: n.dir, Mode: n.mode, Mtime: n.mtime, Nlink: 1}
	if n.dir {
		a.Nlink = 2
		for _, c := range n.ents {
			if m.nodes[c].dir {
				a.Nlink++
			}
		}
	} else {
		a.Size = int64(len(n.data))
	}
	return a
}

// Stat returns the attributes of ino as a process sees them now.
func (m *Model) Stat(ino uint64) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.get(ino)
	if err != nil {
		return Attr{}, err
	}
	return m.attrLocked(n), nil
}

// Lookup resolves name in directory dir.
func (m *Model) Lookup(dir uint64, name string) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.dirNode(dir)
	if err != nil {
		return Attr{}, err
	}
	ino, ok := d.ents[name]
	if !ok {
		return Attr{}, syscall.ENOENT
	}
	return m.attrLocked(m.nodes[ino]), nil
}

// ReadDir lists directory dir, sorted by name.
func (m *Model) ReadDir(dir uint64) ([]DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.dirNode(dir)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(d.ents))
	for name, ino := range d.ents {
		out = append(out, DirEntry{Name: name, Ino: ino, Dir: m.nodes[ino].dir})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadAt reads up to len(p) bytes of ino at off.
func (m *Model) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.get(ino)
	if err != nil {
		return 0, err
	}
	if n.dir {
		return 0, syscall.EISDIR
	}
	if off >= int64(len(n.data)) {
		return 0, nil
	}
	return copy(p, n.data[off:]), nil
}

// Opened counts an open file of ino; Released ends it. A file without a
// name keeps its data while it is open.
func (m *Model) Opened(ino uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.nodes[ino]; ok {
		n.opens++
	}
}

// Released ends an open counted by Opened.
func (m *Model) Released(ino uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.nodes[ino]; ok && n.opens > 0 {
		n.opens--
		m.collect(ino)
	}
}

// SetMode changes the permission bits of ino (not recorded: the outbox's
// durability does not depend on them).
func (m *Model) SetMode(ino uint64, mode uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readOnly {
		return syscall.EROFS
	}
	n, err := m.get(ino)
	if err != nil {
		return err
	}
	n.mode = mode & 0o7777
	return nil
}

// Unsynced reports how many file changes and directory changes are not
// durable yet (what a cut in CutDrop mode would take).
func (m *Model) Unsynced() (fileOps, dirOps int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nodes {
		fileOps += len(n.pend)
		dirOps += len(n.dpend)
	}
	return fileOps, dirOps
}
