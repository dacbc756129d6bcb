package config

import (
	"strconv"
	"strings"
)

// lineIndex maps a key path such as "upstream.tls.cafile" or "device[2].baud"
// to the line it is written on. BurntSushi/toml keeps positions only per key
// name (not per array element), and the user needs to hear "line 31" for the
// third device's typo, so we scan the file ourselves. The scanner understands
// table headers, arrays of tables, dotted and quoted keys, and skips the
// insides of multi-line strings and arrays; inline tables are attributed to
// the line of their key.
type lineIndex map[string]int

func indexLines(src string) lineIndex {
	idx := lineIndex{}
	arrCount := map[string]int{} // array-of-tables path -> elements seen
	prefix := ""
	inMulti := "" // the closing delimiter of a multi-line string, if inside one
	depth := 0    // bracket depth of a multi-line array value
	for n, line := range strings.Split(src, "\n") {
		ln := n + 1
		s := strings.TrimSpace(line)
		if inMulti != "" {
			if strings.Count(s, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDelta(s)
			continue
		}
		if s == "" || s[0] == '#' {
			continue
		}
		if strings.HasPrefix(s, "[[") {
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			p := resolve(arrCount, joinKey(splitKey(s[2:end])))
			i := arrCount[p]
			arrCount[p] = i + 1
			prefix = p + "[" + strconv.Itoa(i) + "]"
			idx.set(prefix, ln)
			continue
		}
		if s[0] == '[' {
			end := strings.LastIndex(s, "]")
			if end < 0 {
				continue
			}
			prefix = resolve(arrCount, joinKey(splitKey(s[1:end])))
			idx.set(prefix, ln)
			continue
		}
		eq := keyEnd(s)
		if eq < 0 {
			continue
		}
		key := joinKey(splitKey(s[:eq]))
		full := key
		if prefix != "" {
			full = prefix + "." + key
		}
		idx.set(full, ln)
		val := strings.TrimSpace(s[eq+1:])
		for _, q := range []string{`"""`, `'''`} {
			if strings.HasPrefix(val, q) && strings.Count(val, q) == 1 {
				inMulti = q
			}
		}
		if strings.HasPrefix(val, "[") {
			depth = bracketDelta(val)
		}
	}
	return idx
}

func (idx lineIndex) set(path string, line int) {
	if _, ok := idx[path]; !ok {
		idx[path] = line
	}
}

// line finds the line of path, falling back to its closest enclosing table.
func (idx lineIndex) line(path string) int {
	for path != "" {
		if l, ok := idx[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			return 0
		}
		path = path[:cut]
	}
	return 0
}

// resolve rewrites a header path whose leading part names an array of tables
// to point into that array's current element: [device.fields.t] after the
// third [[device]] is device[2].fields.t.
func resolve(arrCount map[string]int, p string) string {
	parts := strings.Split(p, ".")
	out := ""
	for i, part := range parts {
		if out != "" {
			out += "."
		}
		out += part
		if n, ok := arrCount[out]; ok && i < len(parts)-1 {
			out += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return out
}

// keyEnd returns the index of the '=' that ends the key part of s, or -1.
func keyEnd(s string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		}
	}
	return -1
}

// splitKey splits a (possibly dotted, possibly quoted) key into its parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

func joinKey(parts []string) string { return strings.Join(parts, ".") }

// bracketDelta counts '[' minus ']' outside strings and comments.
func bracketDelta(s string) int {
	d := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return d
		case c == '[':
			d++
		case c == ']':
			d--
		}
	}
	return d
}
