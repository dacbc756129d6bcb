// Package powerfs is a file system that forgets, on command, everything
// that was not made durable: the model of a power cut that tests put under
// the outbox and the gateway.
//
// The file system is held in memory (Model) with two states per file and
// per directory: what a process sees now (volatile) and what would survive
// a power cut (durable). The rules are those POSIX promises and careful
// programs rely on, no more:
//   - a file's data and size become durable at fsync or fdatasync of that
//     file (any descriptor of it);
//   - a directory's entries (create, link, unlink, rename, mkdir, rmdir)
//     become durable at fsync of that directory; a new file whose entry was
//     never made durable is gone after a cut, even if its data was synced.
//
// PowerCut drops what is not durable (or, torn, keeps a random prefix of
// each file's unsynced writes, the last of them cut at a 512-byte sector,
// and of each directory's unsynced entry changes). Serve exposes a Model
// through FUSE so that a real process (the gateway binary) can run on it;
// Record keeps the sequence of operations so that a test can enumerate
// every crash point of a workload (Replay, Materialise), in the style of
// ALICE and SQLite's crash tests.
//
// Concurrency: every Model method takes the Model's one mutex, and the FUSE
// server calls them from many goroutines at once; an operation and a
// PowerCut never interleave, so a cut falls between two operations, never
// inside one. Nothing blocks while holding it but memory work. Unmount
// waits for the FUSE server to finish.
package powerfs

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"
)

// RootIno is the inode number of the root directory.
const RootIno = 1

// sectorSize is where a torn write is cut.
const sectorSize = 512

// OpKind names a recorded operation.
type OpKind int

// The operations a Model records, one per state change or sync.
const (
	OpCreate   OpKind = iota + 1 // new file Ino named Name in Dir
	OpMkdir                      // new directory Ino named Name in Dir
	OpLink                       // Name in Dir now names Ino (replacing what it named)
	OpUnlink                     // Name removed from Dir
	OpRename                     // Name in Dir moves to NewName in NewDir
	OpWrite                      // Data written to Ino at Off
	OpTruncate                   // Ino's size set to Off
	OpFsync                      // Ino's data and size made durable
	OpFsyncDir                   // Ino's (a directory) entries made durable
	OpSync                       // everything made durable (sync(2), clean unmount)
	OpMark                       // a note of the test's (Note), no state change
)

var opNames = map[OpKind]string{OpCreate: "create", OpMkdir: "mkdir", OpLink: "link", OpUnlink: "unlink",
	OpRename: "rename", OpWrite: "write", OpTruncate: "truncate", OpFsync: "fsync", OpFsyncDir: "fsyncdir",
	OpSync: "sync", OpMark: "mark"}

func (k OpKind) String() string {
	if s, ok := opNames[k]; ok {
		return s
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one recorded operation.
type Op struct {
	Kind          OpKind
	Ino, Dir      uint64
	Name          string
	NewDir        uint64
	NewName       string
	Off           int64
	Data          []byte
	Note          string
	Mode          uint32
	IsDir, Append bool
}

// String is a short description for test failures.
func (op Op) String() string {
	switch op.Kind {
	case OpWrite:
		return fmt.Sprintf("write ino %d off %d len %d", op.Ino, op.Off, len(op.Data))
	case OpTruncate:
		return fmt.Sprintf("truncate ino %d to %d", op.Ino, op.Off)
	case OpFsync, OpFsyncDir:
		return fmt.Sprintf("%s ino %d", op.Kind, op.Ino)
	case OpMark:
		return "mark " + op.Note
	case OpRename:
		return fmt.Sprintf("rename %d/%s -> %d/%s", op.Dir, op.Name, op.NewDir, op.NewName)
	}
	return fmt.Sprintf("%s %d/%s (ino %d)", op.Kind, op.Dir, op.Name, op.Ino)
}

// fileOp is an unsynced change to a file's data: a write, or a size change
// (data == nil).
type fileOp struct {
	off  int64
	data []byte
}

// dirOp is an unsynced change to a directory: name now names ino (0:
// removed); a rename within one directory is two changes applied together.
type dirOp struct {
	name, name2 string
	ino, ino2   uint64
}

type node struct {
	ino   uint64
	mode  uint32 // permission bits
	dir   bool
	mtime time.Time
	// Files.
	data, durable []byte
	pend          []fileOp
	opens         int
	// Directories.
	ents, dents map[string]uint64
	dpend       []dirOp
}

// Model is the in-memory file system. Its methods are safe for concurrent
// use. Errors are syscall.Errno values, as a file system returns them.
type Model struct {
	mu      sync.Mutex
	nodes   map[uint64]*node
	nextIno uint64
	record  bool
	ops     []Op
	cuts    int
	// readOnly refuses every change with EROFS (SetReadOnly).
	readOnly bool
}

// NewModel returns an empty file system: a root directory.
func NewModel() *Model {
	m := &Model{nodes: map[uint64]*node{}, nextIno: RootIno + 1}
	m.nodes[RootIno] = &node{ino: RootIno, dir: true, mode: 0o755, ents: map[string]uint64{}, dents: map[string]uint64{}, mtime: time.Now()}
	return m
}

// Record starts (or stops) keeping every operation for Ops.
func (m *Model) Record(on bool) {
	m.mu.Lock()
	m.record = on
	m.mu.Unlock()
}

// Ops returns the operations recorded so far.
func (m *Model) Ops() []Op {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ops)
}

// Mark records a note in the operation log, ordered with the file system
// operations around it (a test marks, say, that a message was reported
// durable).
func (m *Model) Mark(note string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.record {
		m.ops = append(m.ops, Op{Kind: OpMark, Note: note})
	}
}

// SetReadOnly makes the file system refuse (on) or accept again (off)
// every change: creating, linking, removing or renaming a name, writing,
// truncating, fsync and a change of mode fail with EROFS while reads go on,
// as on a file system the kernel remounted read-only after an error (files
// already open for writing included).
func (m *Model) SetReadOnly(on bool) {
	m.mu.Lock()
	m.readOnly = on
	m.mu.Unlock()
}

// ReadOnly reports whether SetReadOnly(true) is in force.
func (m *Model) ReadOnly() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readOnly
}

// Cuts is how many power cuts the model has seen.
func (m *Model) Cuts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cuts
}

// Replay returns a new model with ops applied to an empty file system, and
// the error of the first op that failed.
func Replay(ops []Op) (*Model, error) {
	m := NewModel()
	for i, op := range ops {
		if err := m.Apply(op); err != nil {
			return m, fmt.Errorf("powerfs: replay op %d (%v): %w", i, op, err)
		}
	}
	return m, nil
}

// Apply performs one operation (as recorded).
func (m *Model) Apply(op Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(op)
}

func (m *Model) applyLocked(op Op) error {
	if m.readOnly && op.Kind != OpSync && op.Kind != OpMark {
		return syscall.EROFS
	}
	var err error
	switch op.Kind {
	case OpCreate, OpMkdir:
		err = m.createLocked(op)
	case OpLink:
		err = m.linkLocked(op.Dir, op.Name, op.Ino)
	case OpUnlink:
		err = m.unlinkLocked(op.Dir, op.Name, op.IsDir)
	case OpRename:
		err = m.renameLocked(op.Dir, op.Name, op.NewDir, op.NewName)
	case OpWrite:
		op.Data = slices.Clone(op.Data) // the caller's buffer is reused
		if op.Append {
			if n, ok := m.nodes[op.Ino]; ok {
				op.Off, op.Append = int64(len(n.data)), false
			}
		}
		err = m.writeLocked(op.Ino, op.Off, op.Data)
	case OpTruncate:
		err = m.truncateLocked(op.Ino, op.Off)
	case OpFsync:
		err = m.fsyncLocked(op.Ino)
	case OpFsyncDir:
		err = m.fsyncDirLocked(op.Ino)
	case OpSync:
		for _, n := range m.nodes {
			m.syncNode(n)
		}
	case OpMark:
	default:
		err = syscall.EINVAL
	}
	if err == nil && m.record {
		m.ops = append(m.ops, op)
	}
	return err
}

func (m *Model) get(ino uint64) (*node, error) {
	n, ok := m.nodes[ino]
	if !ok {
		return nil, syscall.ESTALE
	}
	return n, nil
}

func (m *Model) dirNode(ino uint64) (*node, error) {
	n, err := m.get(ino)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, syscall.ENOTDIR
	}
	return n, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return syscall.EINVAL
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return syscall.EINVAL
		}
	}
	return nil
}

func (m *Model) createLocked(op Op) error {
	d, err := m.dirNode(op.Dir)
	if err != nil {
		return err
	}
	if err := checkName(op.Name); err != nil {
		return err
	}
	if _, ok := d.ents[op.Name]; ok {
		return syscall.EEXIST
	}
	if _, ok := m.nodes[op.Ino]; ok || op.Ino <= RootIno {
		return syscall.EINVAL
	}
	n := &node{ino: op.Ino, mode: op.Mode & 0o7777, mtime: time.Now()}
	if op.Kind == OpMkdir {
		n.dir = true
		n.ents, n.dents = map[string]uint64{}, map[string]uint64{}
	}
	m.nodes[op.Ino] = n
	m.nextIno = max(m.nextIno, op.Ino+1)
	d.ents[op.Name] = op.Ino
	d.dpend = append(d.dpend, dirOp{name: op.Name, ino: op.Ino})
	d.mtime = time.Now()
	return nil
}

func (m *Model) linkLocked(dir uint64, name string, ino uint64) error {
	d, err := m.dirNode(dir)
	if err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	n, err := m.get(ino)
	if err != nil {
		return err
	}
	if n.dir {
		return syscall.EPERM
	}
	if _, ok := d.ents[name]; ok {
		return syscall.EEXIST
	}
	d.ents[name] = ino
	d.dpend = append(d.dpend, dirOp{name: name, ino: ino})
	return nil
}

func (m *Model) unlinkLocked(dir uint64, name string, isDir bool) error {
	d, err := m.dirNode(dir)
	if err != nil {
		return err
	}
	ino, ok := d.ents[name]
	if !ok {
		return syscall.ENOENT
	}
	n := m.nodes[ino]
	switch {
	case isDir && !n.dir:
		return syscall.ENOTDIR
	case !isDir && n.dir:
		return syscall.EISDIR
	case isDir && len(n.ents) > 0:
		return syscall.ENOTEMPTY
	}
	delete(d.ents, name)
	d.dpend = append(d.dpend, dirOp{name: name})
	d.mtime = time.Now()
	m.collect(ino)
	return nil
}

func (m *Model) renameLocked(dir uint64, name string, newDir uint64, newName string) error {
	d, err := m.dirNode(dir)
	if err != nil {
		return err
	}
	nd, err := m.dirNode(newDir)
	if err != nil {
		return err
	}
	if err := checkName(newName); err != nil {
		return err
	}
	ino, ok := d.ents[name]
	if !ok {
		return syscall.ENOENT
	}
	if old, ok := nd.ents[newName]; ok {
		if old == ino {
			return nil
		}
		on := m.nodes[old]
		if on.dir != m.nodes[ino].dir {
			if on.dir {
				return syscall.EISDIR
			}
			return syscall.ENOTDIR
		}
		if on.dir && len(on.ents) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	replaced := nd.ents[newName]
	delete(d.ents, name)
	nd.ents[newName] = ino
	if d == nd {
		// One change: after a cut either both names are as before or both as after.
		d.dpend = append(d.dpend, dirOp{name: name, name2: newName, ino2: ino})
	} else {
		d.dpend = append(d.dpend, dirOp{name: name})
		nd.dpend = append(nd.dpend, dirOp{name: newName, ino: ino})
	}
	d.mtime, nd.mtime = time.Now(), time.Now()
	if replaced != 0 {
		m.collect(replaced)
	}
	return nil
}

func (m *Model) writeLocked(ino uint64, off int64, data []byte) error {
	n, err := m.get(ino)
	if err != nil {
		return err
	}
	if n.dir {
		return syscall.EISDIR
	}
	if off < 0 {
		return syscall.EINVAL
	}
	n.data = writeAt(n.data, off, data)
	n.pend = append(n.pend, fileOp{off: off, data: data})
	n.mtime = time.Now()
	return nil
}

func (m *Model) truncateLocked(ino uint64, size int64) error {
	n, err := m.get(ino)
	if err != nil {
		return err
	}
	if n.dir {
		return syscall.EISDIR
	}
	if size < 0 {
		return syscall.EINVAL
	}
	n.data = resize(n.data, size)
	n.pend = append(n.pend, fileOp{off: size})
	n.mtime = time.Now()
	return nil
}

func (m *Model) fsyncLocked(ino uint64) error {
	n, err := m.get(ino)
	if err != nil {
		return err
	}
	m.syncNode(n)
	return nil
}

func (m *Model) fsyncDirLocked(ino uint64) error {
	n, err := m.dirNode(ino)
	if err != nil {
		return err
	}
	before := maps(n.dents)
	m.syncNode(n)
	for name, c := range before {
		if n.dents[name] != c {
			m.collect(c)
		}
	}
	return nil
}

func (m *Model) syncNode(n *node) {
	if n.dir {
		for _, op := range n.dpend {
			applyDirOp(n.dents, op)
		}
		n.dpend = nil
		return
	}
	for _, op := range n.pend {
		n.durable = applyFileOp(n.durable, op)
	}
	n.pend = nil
}

func applyFileOp(b []byte, op fileOp) []byte {
	if op.data == nil {
		return resize(b, op.off)
	}
	return writeAt(b, op.off, op.data)
}

func applyDirOp(ents map[string]uint64, op dirOp) {
	if op.name2 != "" { // rename within the directory
		delete(ents, op.name)
		ents[op.name2] = op.ino2
		return
	}
	if op.ino == 0 {
		delete(ents, op.name)
	} else {
		ents[op.name] = op.ino
	}
}

func writeAt(b []byte, off int64, p []byte) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], p)
	return b
}

func resize(b []byte, size int64) []byte {
	if size <= int64(len(b)) {
		return b[:size]
	}
	if size <= int64(cap(b)) {
		old := len(b)
		b = b[:size]
		clear(b[old:])
		return b
	}
	nb := make([]byte, size, max(size, int64(cap(b))*2))
	copy(nb, b)
	return nb
}

// collect frees a node's data once no name (volatile or durable) and no
// open file refers to it. The node itself stays: the kernel may still ask
// for its attributes.
func (m *Model) collect(ino uint64) {
	n, ok := m.nodes[ino]
	if !ok || ino == RootIno || n.opens > 0 {
		return
	}
	if m.referenced(ino) {
		return
	}
	n.data, n.durable, n.pend = nil, nil, nil
}

func (m *Model) referenced(ino uint64) bool {
	for _, d := range m.nodes {
		if !d.dir {
			continue
		}
		for _, c := range d.ents {
			if c == ino {
				return true
			}
		}
		for _, c := range d.dents {
			if c == ino {
				return true
			}
		}
		for _, op := range d.dpend {
			if op.ino == ino || op.ino2 == ino {
				return true
			}
		}
	}
	return false
}

// CutMode says what survives a power cut.
type CutMode int

const (
	// CutDrop keeps only what was made durable.
	CutDrop CutMode = iota
	// CutTorn keeps, per file, a random prefix of its unsynced changes (the
	// last kept write cut at a sector boundary) and, per directory, a random
	// prefix of its unsynced entry changes.
	CutTorn
	// CutNone keeps everything (what kill -9 of the writer leaves).
	CutNone
)

func (c CutMode) String() string {
	switch c {
	case CutDrop:
		return "drop"
	case CutTorn:
		return "torn"
	case CutNone:
		return "none"
	}
	return fmt.Sprintf("CutMode(%d)", int(c))
}

// survivor computes what each node holds after a cut: file contents and
// directory entries.
type survivor struct {
	data map[uint64][]byte
	ents map[uint64]map[string]uint64
}

func (m *Model) surviveLocked(mode CutMode, rng *rand.Rand) survivor {
	if rng == nil {
		rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	}
	s := survivor{data: map[uint64][]byte{}, ents: map[uint64]map[string]uint64{}}
	inos := slices.Sorted(func(yield func(uint64) bool) {
		for k := range m.nodes {
			if !yield(k) {
				return
			}
		}
	})
	for _, ino := range inos { // sorted: a seeded rng gives the same cut
		n := m.nodes[ino]
		if n.dir {
			var ents map[string]uint64
			var pend []dirOp
			switch mode {
			case CutNone:
				ents = maps(n.ents)
			case CutDrop:
				ents = maps(n.dents)
			case CutTorn:
				ents = maps(n.dents)
				pend = n.dpend[:rng.IntN(len(n.dpend)+1)]
			}
			for _, op := range pend {
				applyDirOp(ents, op)
			}
			s.ents[ino] = ents
			continue
		}
		switch mode {
		case CutNone:
			s.data[ino] = slices.Clone(n.data)
		case CutDrop:
			s.data[ino] = slices.Clone(n.durable)
		case CutTorn:
			b := slices.Clone(n.durable)
			k := rng.IntN(len(n.pend) + 1)
			for i, op := range n.pend[:k] {
				if i == k-1 && op.data != nil && rng.IntN(2) == 0 {
					// The last write reached the disk only in part: up to
					// a sector boundary of the file inside it.
					var cuts []int
					for b := (op.off/sectorSize + 1) * sectorSize; b < op.off+int64(len(op.data)); b += sectorSize {
						cuts = append(cuts, int(b-op.off))
					}
					if len(cuts) > 0 {
						op.data = op.data[:cuts[rng.IntN(len(cuts))]]
					}
				}
				b = applyFileOp(b, op)
			}
			s.data[ino] = b
		}
	}
	return s
}

func maps(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// PowerCut forgets what a power cut would take (per mode; rng is used by
// CutTorn and may be nil otherwise): afterwards what a process sees is what
// survived, all of it durable (rng nil: seeded from the clock). Open files keep working on what is left of
// them, as on a real machine they would not exist: kill their processes
// first.
func (m *Model) PowerCut(mode CutMode, rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.surviveLocked(mode, rng)
	for ino, n := range m.nodes {
		if n.dir {
			n.ents, n.dents, n.dpend = s.ents[ino], maps(s.ents[ino]), nil
		} else {
			n.data, n.durable, n.pend = s.data[ino], slices.Clone(s.data[ino]), nil
		}
	}
	for ino := range m.nodes {
		m.collect(ino)
	}
	m.cuts++
}

// Sync makes everything durable, as sync(2) does.
func (m *Model) Sync() {
	_ = m.Apply(Op{Kind: OpSync})
}

// Materialise writes into dir (created if missing; it should be empty) the
// tree that would be found after a cut in mode, without changing the model.
func (m *Model) Materialise(dir string, mode CutMode, rng *rand.Rand) error {
	m.mu.Lock()
	s := m.surviveLocked(mode, rng)
	modes := map[uint64]uint32{}
	for ino, n := range m.nodes {
		modes[ino] = n.mode
	}
	m.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("powerfs: materialise: %w", err)
	}
	return s.write(dir, RootIno, modes, map[uint64]string{})
}

func (s survivor) write(path string, dirIno uint64, modes map[uint64]uint32, written map[uint64]string) error {
	ents := s.ents[dirIno]
	names := make([]string, 0, len(ents))
	for name := range ents {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ino := ents[name]
		p := filepath.Join(path, name)
		if _, isDir := s.ents[ino]; isDir {
			if err := os.Mkdir(p, os.FileMode(modes[ino]&0o777|0o700)); err != nil {
				return fmt.Errorf("powerfs: materialise: %w", err)
			}
			if err := s.write(p, ino, modes, written); err != nil {
				return err
			}
			continue
		}
		if first, ok := written[ino]; ok { // a hard link
			if err := os.Link(first, p); err != nil {
				return fmt.Errorf("powerfs: materialise: %w", err)
			}
			continue
		}
		if err := os.WriteFile(p, s.data[ino], os.FileMode(modes[ino]&0o777|0o600)); err != nil {
			return fmt.Errorf("powerfs: materialise: %w", err)
		}
		written[ino] = p
	}
	return nil
}

// Load copies the tree under dir into the model as durable state (a disk
// that was there before the test).
func (m *Model) Load(dir string) error {
	return m.load(dir, RootIno)
}

func (m *Model) load(dir string, parent uint64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("powerfs: load: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("powerfs: load: %w", err)
		}
		ino := m.AllocIno()
		switch {
		case fi.IsDir():
			if err := m.Apply(Op{Kind: OpMkdir, Dir: parent, Name: e.Name(), Ino: ino, Mode: uint32(fi.Mode().Perm())}); err != nil {
				return fmt.Errorf("powerfs: load %s: %w", p, err)
			}
			if err := m.load(p, ino); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("powerfs: load: %w", err)
			}
			if err := m.Apply(Op{Kind: OpCreate, Dir: parent, Name: e.Name(), Ino: ino, Mode: uint32(fi.Mode().Perm())}); err != nil {
				return fmt.Errorf("powerfs: load %s: %w", p, err)
			}
			if err := m.Apply(Op{Kind: OpWrite, Ino: ino, Data: b}); err != nil {
				return fmt.Errorf("powerfs: load %s: %w", p, err)
			}
		default:
			return fmt.Errorf("powerfs: load %s: only directories and regular files are supported", p)
		}
	}
	m.Sync()
	return nil
}

// AllocIno reserves a new inode number (for a Create or Mkdir op).
func (m *Model) AllocIno() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.nextIno
	m.nextIno++
	return ino
}
