package powerfs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

// mountT mounts a fresh model at a temporary directory, or skips with the
// reason when FUSE is not available (never in CI, which runs as root).
func mountT(t *testing.T) *Server {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the power-cut tests: %v", err)
		}
		t.Skipf("skipping: %v (run as root with /dev/fuse)", err)
	}
	s, err := Mount(NewModel(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return s
}

func mustWrite(t *testing.T, path string, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDirT(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

// tree reads every regular file under dir: relative path -> content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		} else if fi.IsDir() && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out[rel+"/"] = ""
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// TestPowerCut runs real system calls on the mount, cuts the power and
// checks that exactly what was made durable is left.
func TestPowerCut(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, d string)
		want map[string]string // after the cut
	}{
		{"unsynced new file is gone", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "hello", false)
		}, map[string]string{}},
		{"file fsync'd but its directory not: gone", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "hello", true)
		}, map[string]string{}},
		{"directory fsync'd but the file not: empty", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "hello", false)
			syncDirT(t, d)
		}, map[string]string{"a": ""}},
		{"both fsync'd, then an unsynced append is lost", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "hello", true)
			syncDirT(t, d)
			mustWrite(t, filepath.Join(d, "a"), " world", false)
		}, map[string]string{"a": "hello"}},
		{"fdatasync keeps data and size", func(t *testing.T, d string) {
			p := filepath.Join(d, "a")
			mustWrite(t, p, "", false)
			syncDirT(t, d)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("0123456789"), 0); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("ab"), 2); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, map[string]string{"a": "0123456789"}},
		{"rename durable only with the directory", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "old"), "v1", true)
			syncDirT(t, d)
			mustWrite(t, filepath.Join(d, "tmp"), "v2", true)
			if err := os.Rename(filepath.Join(d, "tmp"), filepath.Join(d, "old")); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"old": "v1"}},
		{"rename over, directory fsync'd", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "old"), "v1", true)
			syncDirT(t, d)
			mustWrite(t, filepath.Join(d, "tmp"), "v2", true)
			if err := os.Rename(filepath.Join(d, "tmp"), filepath.Join(d, "old")); err != nil {
				t.Fatal(err)
			}
			syncDirT(t, d)
		}, map[string]string{"old": "v2"}},
		{"unlink undone without a directory fsync", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "keep", true)
			syncDirT(t, d)
			if err := os.Remove(filepath.Join(d, "a")); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"a": "keep"}},
		{"truncate undone without fsync", func(t *testing.T, d string) {
			mustWrite(t, filepath.Join(d, "a"), "0123456789", true)
			syncDirT(t, d)
			if err := os.Truncate(filepath.Join(d, "a"), 3); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"a": "0123456789"}},
		{"subdirectory needs both directories synced", func(t *testing.T, d string) {
			sub := filepath.Join(d, "seq")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(sub, "x"), "1", true)
			syncDirT(t, sub)
		}, map[string]string{}},
		{"subdirectory and file synced", func(t *testing.T, d string) {
			sub := filepath.Join(d, "seq")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(sub, "x"), "1", true)
			syncDirT(t, sub)
			syncDirT(t, d)
		}, map[string]string{"seq/": "", "seq/x": "1"}},
	}
	s := mountT(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(s.Dir(), "case"+string(rune('a'+i)))
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			syncDirT(t, s.Dir())
			syncDirT(t, d)
			c.run(t, d)
			s.Model.PowerCut(CutDrop, nil)
			got := tree(t, d)
			if len(got) != len(c.want) {
				t.Fatalf("after the cut: %v, want %v", keys(got), keys(c.want))
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("after the cut %s = %q, want %q", k, got[k], v)
				}
			}
			// And what is left is durable: a second cut changes nothing.
			s.Model.PowerCut(CutDrop, nil)
			if again := tree(t, d); len(again) != len(got) {
				t.Errorf("a second cut changed the tree: %v then %v", keys(got), keys(again))
			}
		})
	}
}

// TestVisibleBeforeCut checks that the mount behaves as a file system for
// what is not durable yet: reads see unsynced writes, listing sees new
// names, O_APPEND appends.
func TestVisibleBeforeCut(t *testing.T) {
	s := mountT(t)
	p := filepath.Join(s.Dir(), "log")
	mustWrite(t, p, "one ", false)
	mustWrite(t, p, "two", false)
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "one two" {
		t.Fatalf("read %q, %v; want \"one two\"", b, err)
	}
	big := bytes.Repeat([]byte("x"), 3<<20)
	if err := os.WriteFile(filepath.Join(s.Dir(), "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Dir(), "big")); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("3 MiB file read back wrong (%d bytes, %v)", len(b), err)
	}
	ents, err := os.ReadDir(s.Dir())
	if err != nil || len(ents) != 2 || ents[0].Name() != "big" || ents[1].Name() != "log" {
		t.Fatalf("readdir = %v, %v", ents, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 7 {
		t.Fatalf("stat = %v, %v", fi, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 100); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	if fi, _ := f.Stat(); fi.Size() != 100 {
		t.Errorf("size after fallocate to 100: %d", fi.Size())
	}
}

// TestTornCut checks that a torn cut keeps a prefix of the unsynced writes,
// never a later write without the earlier ones, and cuts at sectors.
func TestTornCut(t *testing.T) {
	m := NewModel()
	ino := m.AllocIno()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Apply(Op{Kind: OpCreate, Dir: RootIno, Name: "f", Ino: ino, Mode: 0o644}))
	must(m.Apply(Op{Kind: OpFsyncDir, Ino: RootIno}))
	var full []byte
	for i := 0; i < 6; i++ {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		must(m.Apply(Op{Kind: OpWrite, Ino: ino, Data: chunk, Append: true}))
		full = append(full, chunk...)
	}
	lengths := map[int]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		dir := t.TempDir()
		must(m.Materialise(dir, CutTorn, rand.New(rand.NewPCG(seed, 1))))
		b, err := os.ReadFile(filepath.Join(dir, "f"))
		must(err)
		if !bytes.Equal(b, full[:len(b)]) {
			t.Fatalf("seed %d: torn file of %d bytes is not a prefix of what was written", seed, len(b))
		}
		if len(b)%1000 != 0 && len(b)%sectorSize != 0 {
			t.Fatalf("seed %d: torn at %d, not at a write or sector boundary", seed, len(b))
		}
		lengths[len(b)] = true
	}
	if len(lengths) < 5 {
		t.Errorf("200 torn cuts gave only %d different lengths", len(lengths))
	}
	// Materialise does not change the model.
	if f, d := m.Unsynced(); f != 6 || d != 0 {
		t.Errorf("unsynced after materialising: %d file ops, %d dir ops; want 6, 0", f, d)
	}
}

// TestReplay checks that a recorded log replays to the same state.
func TestReplay(t *testing.T) {
	s := mountT(t)
	s.Model.Record(true)
	mustWrite(t, filepath.Join(s.Dir(), "a"), "hello", true)
	syncDirT(t, s.Dir())
	mustWrite(t, filepath.Join(s.Dir(), "a"), " world", false)
	s.Model.Mark("end")
	ops := s.Model.Ops()
	if ops[len(ops)-1].Kind != OpMark {
		t.Fatalf("last op %v, want the mark", ops[len(ops)-1])
	}
	m, err := Replay(ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode CutMode
		want string
	}{{CutDrop, "hello"}, {CutNone, "hello world"}} {
		dir := t.TempDir()
		if err := m.Materialise(dir, c.mode, nil); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != c.want {
			t.Errorf("replayed, cut %v: %q, want %q", c.mode, b, c.want)
		}
	}
}

// TestReadOnly: with SetReadOnly(true) every change fails with EROFS, on
// a file already open for writing too, while reads go on; SetReadOnly(false)
// makes the same open file writable again.
func TestReadOnly(t *testing.T) {
	s := mountT(t)
	p := filepath.Join(s.Dir(), "log")
	mustWrite(t, p, "kept", true)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.Model.SetReadOnly(true)
	cases := []struct {
		name string
		op   func() error
	}{
		{"write to an open file", func() error { _, err := f.WriteString("x"); return err }},
		{"fsync", f.Sync},
		{"create", func() error { return os.WriteFile(filepath.Join(s.Dir(), "new"), nil, 0o644) }},
		{"open for writing", func() error {
			g, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err == nil {
				g.Close()
			}
			return err
		}},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(s.Dir(), "d"), 0o755) }},
		{"rename", func() error { return os.Rename(p, filepath.Join(s.Dir(), "moved")) }},
		{"truncate", func() error { return os.Truncate(p, 0) }},
		{"unlink", func() error { return os.Remove(p) }},
		{"chmod", func() error { return os.Chmod(p, 0o600) }},
		{"fallocate", func() error { return syscall.Fallocate(int(f.Fd()), 0, 0, 1<<20) }},
	}
	for _, c := range cases {
		if err := c.op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s while read-only: %v, want EROFS", c.name, err)
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "kept" {
		t.Fatalf("read while read-only: %q, %v; want \"kept\"", b, err)
	}
	s.Model.SetReadOnly(false)
	if _, err := f.WriteString(" more"); err != nil {
		t.Fatalf("write after SetReadOnly(false): %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after SetReadOnly(false): %v", err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "kept more" {
		t.Fatalf("read after SetReadOnly(false): %q, %v; want \"kept more\"", b, err)
	}
}
