package chart

import (
	"bytes"
	"image/png"
	"math"
	"testing"
)

func TestDrawDecodes(t *testing.T) {
	b, err := Draw([]Panel{
		{Title: "steady msg/s", Bars: []Bar{{Label: "edgegw", Value: 13300, Text: "13.3K", Color: Green}, {Label: "mosquitto q=0", Value: 11100, Text: "11.1K"}}},
		{Title: "empty"},
		{Title: "n/a", Bars: []Bar{{Label: "x", Value: math.NaN(), Text: "N/A"}}},
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Dx(); got != 2*panelW {
		t.Fatalf("width %d, want %d", got, 2*panelW)
	}
	// The first bar is drawn in its colour somewhere.
	found := false
	for y := 0; y < panelH && !found; y++ {
		for x := 0; x < panelW; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r>>8 == uint32(Green.R) && g>>8 == uint32(Green.G) && bl>>8 == uint32(Green.B) {
				found = true
				break
			}
		}
	}
	if !found {
		t.Fatal("the green bar is not in the image")
	}
}

func TestWrap(t *testing.T) {
	got := wrap("mosquitto q=1000 default", 10)
	if len(got) != 3 || got[0] != "mosquitto" {
		t.Fatalf("wrap = %q", got)
	}
}
