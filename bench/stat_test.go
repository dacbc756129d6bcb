package main

import (
	"math"
	"testing"
)

func TestStat(t *testing.T) {
	for _, c := range []struct {
		in          []float64
		med, lo, hi float64
		n           int
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3},
		{[]float64{4, math.NaN(), 1, 2, 3}, 2.5, 1, 4, 4},
	} {
		med, lo, hi, n := stat(c.in)
		if med != c.med || lo != c.lo || hi != c.hi || n != c.n {
			t.Errorf("stat(%v) = %v %v %v %d", c.in, med, lo, hi, n)
		}
	}
	if _, _, _, n := stat([]float64{math.NaN()}); n != 0 {
		t.Error("NaN counted as a run")
	}
	r := ratios([]float64{10, 20, 30}, []float64{5, 0, 10})
	if r[0] != 2 || !math.IsNaN(r[1]) || r[2] != 3 {
		t.Errorf("ratios = %v", r)
	}
	if got := cell([]float64{12000, 11000, 13000}, "k"); got != "12.0k [11.0k..13.0k]" {
		t.Errorf("cell = %q", got)
	}
}
