package sparkplug

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// pending keeps the readings made while the link is down in a file beside
// bdSeq, so a restart during an outage does not lose them: one JSON line
// per reading, appended without fsync (like the sequence numbers, it
// survives kill -9; a power cut may cost the last ones), written only while
// the link is down, removed once they went up. When it holds twice the
// memory bound it is rewritten from memory.
type pending struct {
	path  string
	f     *os.File
	lines int
	err   error // the first write error, logged once
}

type pendingLine struct {
	Device  string          `json:"d"`
	Payload json.RawMessage `json:"p"`
}

// load reads what an earlier run left; a torn or damaged line costs that
// line only.
func (p *pending) load() (entries []pendingLine, bad int, err error) {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l pendingLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Device == "" {
			bad++
			continue
		}
		entries = append(entries, l)
	}
	p.lines = len(entries) + bad
	return entries, bad, nil
}

// add appends one reading.
func (p *pending) add(device string, payload []byte) error {
	if p.f == nil {
		f, err := os.OpenFile(p.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return err
		}
		p.f = f
	}
	b, err := json.Marshal(pendingLine{Device: device, Payload: payload})
	if err != nil {
		return err
	}
	if _, err := p.f.Write(append(b, '\n')); err != nil {
		return err
	}
	p.lines++
	return nil
}

// rewrite replaces the file with entries (none: removes it).
func (p *pending) rewrite(entries []stored) error {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	p.lines = 0
	if len(entries) == 0 {
		if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	var buf bytes.Buffer
	for _, e := range entries {
		b, err := json.Marshal(pendingLine{Device: e.device, Payload: e.payload})
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("%s: %w", p.path, err)
	}
	p.lines = len(entries)
	return nil
}

func (p *pending) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
}
