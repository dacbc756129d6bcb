package deadletter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func open(t *testing.T, dir string, max int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func add(t *testing.T, s *Store, topic, payload string) uint64 {
	t.Helper()
	id, err := s.Add(Entry{Code: 0x87, Cause: "not authorized", Topic: topic, QoS: 1, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func topics(es []Entry) string {
	var b []string
	for _, e := range es {
		b = append(b, e.Topic)
	}
	return strings.Join(b, ",")
}

// TestStoreOnDisk: what survives a reopen, a torn tail, a damaged record;
// the bound; permissions.
func TestStoreOnDisk(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the file between two opens.
		damage     func(t *testing.T, path string)
		want       string // topics after the reopen
		damagedOut bool   // a copy of a damaged file is kept
	}{
		{name: "reopen keeps every entry but the removed", damage: func(*testing.T, string) {}, want: "a,c"},
		{name: "torn tail: the half-written record is cut", damage: func(t *testing.T, p string) {
			f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{40, 0, 0, 0, 1, 2, 3}) // a header announcing 40 bytes, then nothing
			f.Close()
		}, want: "a,c"},
		{name: "flipped byte in the last record: the ones before are kept, the file is kept aside", damage: func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[len(b)-2] ^= 0xff
			os.WriteFile(p, b, 0o600)
		}, want: "a", damagedOut: true},
		{name: "flipped byte in the first record: the one after it is kept", damage: func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[recHeader+entryFixed] ^= 0xff // inside the first record's cause
			os.WriteFile(p, b, 0o600)
		}, want: "c", damagedOut: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			add(t, s, "a", "1")
			b := add(t, s, "b", "2")
			add(t, s, "c", "3")
			if err := s.Remove(b, Dropped); err != nil {
				t.Fatal(err)
			}
			s.Close()
			path := filepath.Join(dir, FileName)
			// The removal record is compacted away on the next open; damage
			// the compacted file.
			s = open(t, dir, 0)
			s.Close()
			tc.damage(t, path)
			s = open(t, dir, 0)
			if got := topics(s.List()); got != tc.want {
				t.Errorf("entries %q, want %q", got, tc.want)
			}
			if (s.Damaged() != "") != tc.damagedOut {
				t.Errorf("damaged copy %q, want one: %v", s.Damaged(), tc.damagedOut)
			}
			// New ids never repeat one still held.
			if id := add(t, s, "d", "4"); id <= 3 && tc.want == "a,c" {
				t.Errorf("new id %d reuses a held one", id)
			}
			fi, _ := os.Stat(path)
			di, _ := os.Stat(dir)
			if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
				t.Errorf("modes file %v dir %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
			}
		})
	}
}

// TestStoreBoundAndRequests: a full store says so; replay and drop through
// a request file, as `edgegw deadletter` does while the gateway runs.
func TestStoreBoundAndRequests(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 200)
	add(t, s, "a", strings.Repeat("x", 50))
	add(t, s, "b", strings.Repeat("x", 50))
	if _, err := s.Add(Entry{Topic: "c", Payload: []byte(strings.Repeat("x", 100))}); !errors.Is(err, ErrFull) {
		t.Fatalf("a third entry over the bound: %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Full != 1 || st.Entries != 2 || st.ByCode["0x87"] != 2 {
		t.Errorf("stats %+v", st)
	}
	var requeued []string
	requeue := func(e Entry) error {
		if e.Topic == "fail" {
			return errors.New("outbox closed")
		}
		requeued = append(requeued, e.Topic)
		return nil
	}
	cases := []struct {
		req      Request
		replayed int
		dropped  int
		errs     int
		left     string
	}{
		{Request{Op: "replay", IDs: []uint64{1, 99}}, 1, 0, 1, "b"},
		{Request{Op: "frobnicate", All: true}, 0, 0, 1, "b"},
		{Request{Op: "drop", All: true}, 0, 1, 0, ""},
	}
	for _, tc := range cases {
		f, err := SubmitRequest(dir, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.ServeRequests(requeue); n != 1 || err != nil {
			t.Fatalf("served %d, %v", n, err)
		}
		res, err := WaitResult(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Replayed != tc.replayed || res.Dropped != tc.dropped || len(res.Errors) != tc.errs {
			t.Errorf("%+v: result %+v", tc.req, res)
		}
		if got := topics(s.List()); got != tc.left {
			t.Errorf("%+v: left %q, want %q", tc.req, got, tc.left)
		}
	}
	if strings.Join(requeued, ",") != "a" {
		t.Errorf("requeued %v, want [a]", requeued)
	}
	if got, err := ReadDir(dir); err != nil || len(got) != 0 {
		t.Errorf("ReadDir after drop all: %v %v", got, err)
	}
}
