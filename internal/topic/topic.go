// Package topic holds the MQTT topic rules every part of edgegw must agree
// on: how a filter with + and # matches a topic name, and what makes a
// filter valid. The bridge, the external-broker client and the ACL all use
// this one copy.
//
// Concurrency: pure functions; safe from any goroutine, never blocking.
package topic

import (
	"errors"
	"strings"
)

// Match reports whether a topic name matches a filter with + and #
// wildcards. A topic starting with $ matches no filter that starts with a
// wildcard, as the MQTT specification requires (4.7.2).
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" also matches "a"
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}

// ValidFilter returns nil for a valid topic filter, else what is wrong.
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("a filter must not be empty")
	}
	if strings.ContainsRune(f, 0) {
		return errors.New("a filter must not hold a NUL character")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New("'#' must be a whole last level")
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New("'+' must be a whole level")
		}
	}
	return nil
}
