package main

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// written lives in the executable's writable data: the trim must leave it.
var written = [4096]byte{1: 42}

// TestTrimResident: after start-up, the trim gives back resident memory,
// never touches writable data, and the code it dropped runs again.
func TestTrimResident(t *testing.T) {
	written[2] = 7
	sumBefore := fmt.Sprintf("%x", sha256.Sum256([]byte("edgegw")))
	before, after, err := trimResident()
	if err != nil {
		t.Fatal(err)
	}
	if before == 0 || after == 0 {
		t.Fatalf("VmRSS not read: before %d, after %d KiB", before, after)
	}
	if after >= before {
		t.Errorf("resident set %d KiB after the trim, %d before: nothing given back", after, before)
	}
	if written[1] != 42 || written[2] != 7 {
		t.Errorf("writable data changed by the trim: %d %d", written[1], written[2])
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256([]byte("edgegw"))); sum != sumBefore {
		t.Errorf("code run again after the trim gives %s, before %s", sum, sumBefore)
	}
	t.Logf("resident %d KiB -> %d KiB", before, after)
}
