package powerfs

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Server is a Model mounted with FUSE.
type Server struct {
	// Model is the file system served; PowerCut on it takes effect at once
	// (the kernel caches neither names, attributes nor data of this mount).
	Model *Model
	srv   *fuse.Server
	dir   string
}

// Available reports why FUSE cannot be mounted here, or nil if it can:
// mounting needs /dev/fuse and root (the mount is made with mount(2)
// directly, so no fusermount helper is needed).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("powerfs: mounting FUSE needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("powerfs: no /dev/fuse: %w", err)
	}
	return nil
}

// Mount serves m at the directory mountpoint until Unmount.
func Mount(m *Model, mountpoint string) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	fsys := &rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), m: m, handles: map[uint64]handle{}}
	srv, err := fuse.NewServer(fsys, mountpoint, &fuse.MountOptions{
		FsName:             "powerfs",
		Name:               "powerfs",
		DirectMountStrict:  true,
		AllowOther:         true,
		DisableReadDirPlus: true,
		DisableXAttrs:      true,
		MaxWrite:           256 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount %s: %w", mountpoint, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("powerfs: mount %s: %w", mountpoint, err)
	}
	return &Server{Model: m, srv: srv, dir: mountpoint}, nil
}

// Dir is the mount point.
func (s *Server) Dir() string { return s.dir }

// Unmount unmounts the file system (every file on it must be closed) and
// waits until the server has stopped.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		return fmt.Errorf("powerfs: unmount %s: %w", s.dir, err)
	}
	s.srv.Wait()
	return nil
}

type handle struct {
	ino    uint64
	append bool
}

// rawFS adapts a Model to go-fuse's raw protocol. Node ids are the model's
// inode numbers. Every reply says "do not cache" (zero timeouts, direct
// I/O), so that after a power cut the kernel asks again.
type rawFS struct {
	fuse.RawFileSystem
	m *Model

	mu      sync.Mutex
	nextFh  uint64
	handles map[uint64]handle
}

func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fuse.Status(errno)
	}
	return fuse.EIO
}

func fillAttr(a Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Size = uint64(a.Size)
	out.Blocks = (uint64(a.Size) + 511) / 512
	out.Blksize = 4096
	out.Nlink = uint32(a.Nlink)
	if a.Dir {
		out.Mode = syscall.S_IFDIR | a.Mode
	} else {
		out.Mode = syscall.S_IFREG | a.Mode
	}
	t := a.Mtime
	out.SetTimes(&t, &t, &t)
}

func fillEntry(a Attr, out *fuse.EntryOut) {
	out.NodeId = a.Ino
	out.Generation = 1
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	fillAttr(a, &out.Attr)
}

func (r *rawFS) String() string { return "powerfs" }

func (r *rawFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	a, err := r.m.Lookup(h.NodeId, name)
	if err != nil {
		return status(err)
	}
	fillEntry(a, out)
	return fuse.OK
}

func (r *rawFS) Forget(uint64, uint64) {}

func (r *rawFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	a, err := r.m.Stat(in.NodeId)
	if err != nil {
		return status(err)
	}
	out.SetTimeout(0)
	fillAttr(a, &out.Attr)
	return fuse.OK
}

func (r *rawFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if err := r.m.Apply(Op{Kind: OpTruncate, Ino: in.NodeId, Off: int64(in.Size)}); err != nil {
			return status(err)
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := r.m.SetMode(in.NodeId, mode); err != nil {
			return status(err)
		}
	}
	// Owners and times are accepted and not kept.
	a, err := r.m.Stat(in.NodeId)
	if err != nil {
		return status(err)
	}
	out.SetTimeout(0)
	fillAttr(a, &out.Attr)
	return fuse.OK
}

func (r *rawFS) newNode(kind OpKind, dir uint64, name string, mode uint32, out *fuse.EntryOut) fuse.Status {
	ino := r.m.AllocIno()
	if err := r.m.Apply(Op{Kind: kind, Dir: dir, Name: name, Ino: ino, Mode: mode}); err != nil {
		return status(err)
	}
	a, err := r.m.Stat(ino)
	if err != nil {
		return status(err)
	}
	fillEntry(a, out)
	return fuse.OK
}

func (r *rawFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG && in.Mode&syscall.S_IFMT != 0 {
		return fuse.Status(syscall.EPERM) // regular files only
	}
	return r.newNode(OpCreate, in.NodeId, name, in.Mode, out)
}

func (r *rawFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return r.newNode(OpMkdir, in.NodeId, name, in.Mode, out)
}

func (r *rawFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return status(r.m.Apply(Op{Kind: OpUnlink, Dir: h.NodeId, Name: name}))
}

func (r *rawFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return status(r.m.Apply(Op{Kind: OpUnlink, Dir: h.NodeId, Name: name, IsDir: true}))
}

const renameNoReplace = 1 // RENAME_NOREPLACE

func (r *rawFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	switch in.Flags {
	case 0:
	case renameNoReplace:
		if _, err := r.m.Lookup(in.Newdir, newName); err == nil {
			return fuse.Status(syscall.EEXIST)
		}
	default:
		return fuse.Status(syscall.EINVAL) // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	return status(r.m.Apply(Op{Kind: OpRename, Dir: in.NodeId, Name: oldName, NewDir: in.Newdir, NewName: newName}))
}

func (r *rawFS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if err := r.m.Apply(Op{Kind: OpLink, Dir: in.NodeId, Name: name, Ino: in.Oldnodeid}); err != nil {
		return status(err)
	}
	a, err := r.m.Stat(in.Oldnodeid)
	if err != nil {
		return status(err)
	}
	fillEntry(a, out)
	return fuse.OK
}

func (r *rawFS) Access(<-chan struct{}, *fuse.AccessIn) fuse.Status { return fuse.OK }

func (r *rawFS) addHandle(ino uint64, flags uint32) uint64 {
	r.m.Opened(ino)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextFh++
	r.handles[r.nextFh] = handle{ino: ino, append: flags&syscall.O_APPEND != 0}
	return r.nextFh
}

func (r *rawFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if st := r.newNode(OpCreate, in.NodeId, name, in.Mode, &out.EntryOut); !st.Ok() {
		return st
	}
	out.Fh = r.addHandle(out.NodeId, in.Flags)
	out.OpenFlags = fuse.FOPEN_DIRECT_IO
	return fuse.OK
}

func (r *rawFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	a, err := r.m.Stat(in.NodeId)
	if err != nil {
		return status(err)
	}
	if a.Dir {
		return fuse.Status(syscall.EISDIR)
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY && r.m.ReadOnly() {
		return fuse.Status(syscall.EROFS)
	}
	if in.Flags&syscall.O_TRUNC != 0 && a.Size > 0 {
		if err := r.m.Apply(Op{Kind: OpTruncate, Ino: in.NodeId}); err != nil {
			return status(err)
		}
	}
	out.Fh = r.addHandle(in.NodeId, in.Flags)
	out.OpenFlags = fuse.FOPEN_DIRECT_IO
	return fuse.OK
}

func (r *rawFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	n, err := r.m.ReadAt(in.NodeId, buf[:min(len(buf), int(in.Size))], int64(in.Offset))
	if err != nil {
		return nil, status(err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (r *rawFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	r.mu.Lock()
	h := r.handles[in.Fh]
	r.mu.Unlock()
	op := Op{Kind: OpWrite, Ino: in.NodeId, Off: int64(in.Offset), Data: data, Append: h.append || in.Flags&syscall.O_APPEND != 0}
	if err := r.m.Apply(op); err != nil {
		return 0, status(err)
	}
	return uint32(len(data)), fuse.OK
}

func (r *rawFS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	r.mu.Lock()
	h, ok := r.handles[in.Fh]
	delete(r.handles, in.Fh)
	r.mu.Unlock()
	if ok {
		r.m.Released(h.ino)
	}
}

func (r *rawFS) Flush(<-chan struct{}, *fuse.FlushIn) fuse.Status { return fuse.OK }

func (r *rawFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	// fdatasync (FsyncFlags bit 0) also makes the size durable: it must,
	// for the data to be read back.
	return status(r.m.Apply(Op{Kind: OpFsync, Ino: in.NodeId}))
}

const (
	fallocKeepSize  = 0x01 // FALLOC_FL_KEEP_SIZE
	fallocPunchHole = 0x02 // FALLOC_FL_PUNCH_HOLE
)

func (r *rawFS) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	a, err := r.m.Stat(in.NodeId)
	if err != nil {
		return status(err)
	}
	end := int64(in.Offset + in.Length)
	switch in.Mode {
	case 0:
		if end > a.Size {
			return status(r.m.Apply(Op{Kind: OpTruncate, Ino: in.NodeId, Off: end}))
		}
		return fuse.OK
	case fallocKeepSize:
		if r.m.ReadOnly() {
			return fuse.Status(syscall.EROFS)
		}
		return fuse.OK // space is not modelled
	case fallocPunchHole | fallocKeepSize:
		if int64(in.Offset) >= a.Size {
			return fuse.OK
		}
		zeros := make([]byte, min(end, a.Size)-int64(in.Offset))
		return status(r.m.Apply(Op{Kind: OpWrite, Ino: in.NodeId, Off: int64(in.Offset), Data: zeros}))
	}
	return fuse.Status(syscall.EOPNOTSUPP)
}

func (r *rawFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	a, err := r.m.Stat(in.NodeId)
	if err != nil {
		return status(err)
	}
	if !a.Dir {
		return fuse.Status(syscall.ENOTDIR)
	}
	return fuse.OK
}

func (r *rawFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	ents, err := r.m.ReadDir(in.NodeId)
	if err != nil {
		return status(err)
	}
	// Offsets: 1 ".", 2 "..", then 3… the entries in name order.
	all := append([]DirEntry{{Name: ".", Ino: in.NodeId, Dir: true}, {Name: "..", Ino: RootIno, Dir: true}}, ents...)
	for i := int(in.Offset); i < len(all); i++ {
		e := all[i]
		mode := uint32(syscall.S_IFREG)
		if e.Dir {
			mode = syscall.S_IFDIR
		}
		if !out.AddDirEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: mode, Off: uint64(i + 1)}) {
			break
		}
	}
	return fuse.OK
}

func (r *rawFS) ReleaseDir(*fuse.ReleaseIn) {}

func (r *rawFS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return status(r.m.Apply(Op{Kind: OpFsyncDir, Ino: in.NodeId}))
}

func (r *rawFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	out.Blocks, out.Bfree, out.Bavail = 1<<20, 1<<19, 1<<19
	out.Files, out.Ffree = 1<<20, 1<<19
	return fuse.OK
}
