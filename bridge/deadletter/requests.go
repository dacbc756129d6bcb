package deadletter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// requestDir holds the request files `edgegw deadletter` leaves for a
// running gateway.
const requestDir = "requests"

// Request asks to replay or drop entries.
type Request struct {
	Op  string   `json:"op"`  // "replay" or "drop"
	IDs []uint64 `json:"ids"` // empty with All
	All bool     `json:"all"`
}

// Result is what applying a Request did.
type Result struct {
	Replayed int      `json:"replayed"`
	Dropped  int      `json:"dropped"`
	Errors   []string `json:"errors,omitempty"`
}

// Apply carries out r: replay hands each entry to requeue (which puts it
// back into the outbox) and removes it once requeue returned nil; drop
// removes it. An unknown id is an error of its own and does not stop the
// others.
func (s *Store) Apply(r Request, requeue func(Entry) error) Result {
	var res Result
	if r.Op != "replay" && r.Op != "drop" {
		res.Errors = append(res.Errors, fmt.Sprintf("deadletter: unknown operation %q (want replay or drop)", r.Op))
		return res
	}
	held := map[uint64]Entry{}
	for _, e := range s.List() {
		held[e.ID] = e
	}
	ids := r.IDs
	if r.All {
		ids = ids[:0:0]
		for id := range held {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	}
	for _, id := range ids {
		e, ok := held[id]
		if !ok {
			res.Errors = append(res.Errors, fmt.Sprintf("deadletter: no entry %d", id))
			continue
		}
		how := Dropped
		if r.Op == "replay" {
			if err := requeue(e); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("deadletter: replay %d: %v", id, err))
				continue
			}
			how = Replayed
		}
		if err := s.Remove(id, how); err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		if how == Replayed {
			res.Replayed++
		} else {
			res.Dropped++
		}
	}
	return res
}

// SubmitRequest leaves r for the gateway in dir (write temp, rename) and
// returns the request file's path.
func SubmitRequest(dir string, r Request) (string, error) {
	rd := filepath.Join(dir, requestDir)
	if err := os.MkdirAll(rd, 0o700); err != nil {
		return "", fmt.Errorf("deadletter: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	name := filepath.Join(rd, strconv.FormatInt(time.Now().UnixNano(), 10)+".req")
	if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
		return "", fmt.Errorf("deadletter: %w", err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return "", fmt.Errorf("deadletter: %w", err)
	}
	return name, nil
}

// ServeRequests applies every request file waiting in the store's
// directory, oldest first, and renames each to <name>.done holding the
// Result as JSON. The gateway calls it when its Watch says so (or every
// second without one). A file that is not a
// request gets a Result naming the problem.
func (s *Store) ServeRequests(requeue func(Entry) error) (served int, err error) {
	rd := filepath.Join(s.dir, requestDir)
	des, err := os.ReadDir(rd)
	if err != nil {
		return 0, fmt.Errorf("deadletter: %w", err)
	}
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".req") {
			continue
		}
		path := filepath.Join(rd, de.Name())
		var res Result
		b, rerr := os.ReadFile(path)
		var r Request
		if rerr == nil {
			rerr = json.Unmarshal(b, &r)
		}
		if rerr != nil {
			res.Errors = []string{fmt.Sprintf("deadletter: request %s: %v", path, rerr)}
		} else {
			res = s.Apply(r, requeue)
		}
		out, _ := json.Marshal(res)
		if werr := os.WriteFile(path+".tmp", out, 0o600); werr != nil {
			return served, fmt.Errorf("deadletter: %w", werr)
		}
		if werr := os.Rename(path+".tmp", strings.TrimSuffix(path, ".req")+".done"); werr != nil {
			return served, fmt.Errorf("deadletter: %w", werr)
		}
		_ = os.Remove(path)
		served++
	}
	return served, nil
}

// WaitResult waits up to timeout for the gateway to serve the request file
// at path, and returns its Result (and removes the .done file).
// ErrNotServed means the gateway did not take it in time.
func WaitResult(path string, timeout time.Duration) (Result, error) {
	done := strings.TrimSuffix(path, ".req") + ".done"
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(done)
		if err == nil {
			var r Result
			if err := json.Unmarshal(b, &r); err != nil {
				return r, fmt.Errorf("deadletter: result %s: %w", done, err)
			}
			_ = os.Remove(done)
			return r, nil
		}
		if time.Now().After(deadline) {
			return Result{}, ErrNotServed
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ErrNotServed is returned by WaitResult when no gateway took the request.
var ErrNotServed = errors.New("deadletter: the request was not served in time (is the gateway running?)")
