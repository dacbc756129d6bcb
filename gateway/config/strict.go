package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// checkShape walks TOML data (as decoded into map[string]any) against the Go
// type it will be decoded into, and reports every unknown key and every value
// of the wrong type, each with its path. It exists because the TOML decoder
// stops at the first problem and cannot tell array elements apart, and the
// user deserves every mistake at once, each with its line.
// skip lists keys of the top level that the caller handles itself.
func checkShape(data map[string]any, t reflect.Type, path string, skip map[string]bool, report func(path, msg string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	known := fieldsByTag(t)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if skip[k] {
			continue
		}
		p := joinPath(path, k)
		f, ok := known[k]
		if !ok {
			report(p, fmt.Sprintf("unknown key %q%s", k, suggest(k, known)))
			continue
		}
		checkValue(data[k], f.Type, p, report)
	}
}

func checkValue(v any, t reflect.Type, p string, report func(path, msg string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) || t == reflect.TypeOf(time.Duration(0)) {
		if _, ok := v.(string); !ok {
			report(p, fmt.Sprintf("wants a string, not %s", tomlKind(v)))
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			report(p, fmt.Sprintf("wants a string, not %s", tomlKind(v)))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			report(p, fmt.Sprintf("wants true or false, not %s", tomlKind(v)))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, ok := v.(int64); !ok {
			report(p, fmt.Sprintf("wants a whole number, not %s", tomlKind(v)))
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case int64, float64:
		default:
			report(p, fmt.Sprintf("wants a number, not %s", tomlKind(v)))
		}
	case reflect.Slice, reflect.Array:
		switch vv := v.(type) {
		case []map[string]any:
			for i, e := range vv {
				checkValue(e, t.Elem(), p+"["+strconv.Itoa(i)+"]", report)
			}
		case []any:
			for i, e := range vv {
				checkValue(e, t.Elem(), p+"["+strconv.Itoa(i)+"]", report)
			}
		default:
			report(p, fmt.Sprintf("wants a list, not %s", tomlKind(v)))
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			report(p, fmt.Sprintf("wants a table, not %s", tomlKind(v)))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			checkValue(m[k], t.Elem(), joinPath(p, k), report)
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			report(p, fmt.Sprintf("wants a table, not %s", tomlKind(v)))
			return
		}
		checkShape(m, t, p, nil, report)
	case reflect.Interface:
		// any value is fine
	}
}

// fieldsByTag maps the toml key of each field of struct type t to the field,
// following embedded structs.
func fieldsByTag(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range fieldsByTag(ft) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func tomlKind(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the number %d", v)
	case float64:
		return fmt.Sprintf("the number %g", v)
	case bool:
		return fmt.Sprintf("%t", v)
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// suggest returns ` (did you mean "x"?)` for a near miss, or "".
func suggest(k string, known map[string]reflect.StructField) string {
	best, bestD := "", 3
	for name := range known {
		if d := editDistance(k, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		names := make([]string, 0, len(known))
		for n := range known {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return "; this table takes no keys"
		}
		return "; allowed here: " + strings.Join(names, ", ")
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
