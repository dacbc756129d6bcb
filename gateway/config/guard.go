package config

import (
	"fmt"
	"io"
	"os"
)

// Limits on a configuration file, checked before the TOML parser sees it:
// deeply nested inline tables make the parser use memory out of all
// proportion to the file (32 KB of them took gigabytes), and check-config
// runs as the service's ExecStartPre.
const (
	// MaxFileSize is the largest configuration file read.
	MaxFileSize = 1 << 20
	// MaxNesting is the deepest nesting of arrays and inline tables.
	MaxNesting = 16
)

// readLimited reads a configuration file of at most MaxFileSize bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, errTooBig
	}
	return b, nil
}

var errTooBig = fmt.Errorf("the file is larger than %d bytes; a gateway configuration is a few KiB (is this the right file?)", MaxFileSize)

// checkNesting returns the line where arrays and inline tables nest deeper
// than MaxNesting, or 0. It follows TOML's lexical rules far enough to skip
// strings, comments and table headers.
func checkNesting(src string) (line, depth int) {
	line = 1
	depth = 0
	lineStart := true
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\n':
			line++
			lineStart = true
			continue
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case c == '#':
			for i+1 < len(src) && src[i+1] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'':
			i, line = skipString(src, i, line)
		case c == '[' && lineStart && depth == 0:
			// A table header: [a.b] or [[a]]; its brackets do not nest.
			for i+1 < len(src) && src[i+1] != '\n' {
				i++
				if src[i] == '"' || src[i] == '\'' {
					i, line = skipString(src, i, line)
				} else if src[i] == '#' {
					i--
					break
				}
			}
		case c == '[' || c == '{':
			depth++
			if depth > MaxNesting {
				return line, depth
			}
		case c == ']' || c == '}':
			if depth > 0 {
				depth--
			}
		}
		lineStart = false
	}
	return 0, 0
}

// skipString returns the index of the last byte of the string starting at
// i (basic, literal, or their multi-line forms) and the line it ends on.
func skipString(src string, i, line int) (int, int) {
	q := src[i]
	if i+2 < len(src) && src[i+1] == q && src[i+2] == q {
		for j := i + 3; j < len(src); j++ {
			switch {
			case src[j] == '\n':
				line++
			case q == '"' && src[j] == '\\':
				j++
				if j < len(src) && src[j] == '\n' {
					line++
				}
			case src[j] == q && j+2 < len(src) && src[j+1] == q && src[j+2] == q:
				j += 2
				for j+1 < len(src) && src[j+1] == q { // up to two more quotes belong to the string
					j++
				}
				return j, line
			}
		}
		return len(src) - 1, line
	}
	for j := i + 1; j < len(src); j++ {
		switch {
		case src[j] == '\n':
			return j - 1, line // unterminated: the parser reports it
		case q == '"' && src[j] == '\\':
			j++
		case src[j] == q:
			return j, line
		}
	}
	return len(src) - 1, line
}
