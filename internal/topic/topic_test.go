package topic

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		f, t string
		want bool
	}{
		{"readings/#", "readings/door", true},
		{"readings/#", "readings", true},
		{"readings/#", "readingsx/door", false},
		{"readings/+", "readings/door", true},
		{"readings/+", "readings/door/x", false},
		{"readings/+/t", "readings/a/t", true},
		{"#", "a/b/c", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/+", "a/", true},
		{"+", "", true},
	}
	for _, c := range cases {
		if got := Match(c.f, c.t); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.f, c.t, got, c.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for f, ok := range map[string]bool{
		"a/b": true, "a/#": true, "#": true, "+/+": true, "a/+/c": true,
		"": false, "a/#/b": false, "a#": false, "a+/b": false, "a/b+": false, "a\x00": false,
	} {
		if err := ValidFilter(f); (err == nil) != ok {
			t.Errorf("ValidFilter(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}
