package serialport

import "bytes"

// LineSplitter cuts a byte stream into lines ending in LF (a CR before the
// LF is dropped). A line longer than Max bytes is dropped whole and reported
// through Overlong; so is a partial line cut by Reset.
type LineSplitter struct {
	Max int // maximum line length without CR LF; 0 means 4096

	buf  []byte
	skip bool // in the middle of an overlong line
}

// Reset drops a partial line.
func (s *LineSplitter) Reset() { s.buf, s.skip = s.buf[:0], false }

// Feed calls line for every whole line in b (the slice is only valid during
// the call) and overlong for every line dropped for its length.
func (s *LineSplitter) Feed(b []byte, line func([]byte), overlong func()) {
	max := s.Max
	if max <= 0 {
		max = 4096
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if !s.skip {
				s.buf = append(s.buf, b...)
				if len(s.buf) > max+1 {
					s.buf, s.skip = s.buf[:0], true
					overlong()
				}
			}
			return
		}
		if s.skip {
			s.skip = false
		} else {
			s.buf = append(s.buf, b[:i]...)
			l := bytes.TrimSuffix(s.buf, []byte{'\r'})
			if len(l) > max {
				overlong()
			} else {
				line(l)
			}
		}
		s.buf = s.buf[:0]
		b = b[i+1:]
	}
}
