// Package chart draws labelled bar charts as PNG with the standard library
// only (image, image/png and a built-in 5×7 bitmap font).
package chart

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
)

// Bar is one bar: a label under it, a value and the text written above it.
type Bar struct {
	Label string
	Value float64
	Text  string
	Color color.RGBA
}

// Panel is one small bar chart with a title.
type Panel struct {
	Title string
	Bars  []Bar
}

// Palette for the series the bench draws.
var (
	Green  = color.RGBA{0x2e, 0x8b, 0x57, 0xff}
	Orange = color.RGBA{0xe0, 0x7b, 0x22, 0xff}
	Red    = color.RGBA{0xc0, 0x39, 0x2b, 0xff}
	Grey   = color.RGBA{0x80, 0x80, 0x80, 0xff}
	Blue   = color.RGBA{0x2c, 0x6f, 0xbb, 0xff}
)

var (
	white = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black = color.RGBA{0x20, 0x20, 0x20, 0xff}
	light = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

const (
	scale  = 2 // font pixel size
	charW  = 6 * scale
	lineH  = 9 * scale
	panelW = 520
	panelH = 330
)

// Draw lays the panels out in cols columns and encodes the PNG.
func Draw(panels []Panel, cols int) ([]byte, error) {
	if cols < 1 {
		cols = 1
	}
	rows := (len(panels) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*panelW, max(rows, 1)*panelH))
	fill(img, img.Bounds(), white)
	for i, p := range panels {
		drawPanel(img, image.Pt((i%cols)*panelW, (i/cols)*panelH), p)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func drawPanel(img *image.RGBA, o image.Point, p Panel) {
	Text(img, o.X+16, o.Y+12, p.Title, black)
	base := o.Y + panelH - 3*lineH - 6 // bar baseline
	top := o.Y + 12 + 2*lineH + 4
	fill(img, image.Rect(o.X+12, base, o.X+panelW-12, base+2), black)
	peak := 0.0
	for _, b := range p.Bars {
		if !math.IsNaN(b.Value) {
			peak = math.Max(peak, b.Value)
		}
	}
	n := len(p.Bars)
	if n == 0 {
		return
	}
	slot := (panelW - 24) / n
	bw := min(slot*2/3, 90)
	for i, b := range p.Bars {
		cx := o.X + 12 + slot*i + slot/2
		h := 0
		if peak > 0 && !math.IsNaN(b.Value) && b.Value > 0 {
			h = int(float64(base-top) * b.Value / peak)
			h = max(h, 1)
		}
		c := b.Color
		if c.A == 0 {
			c = Blue
		}
		fill(img, image.Rect(cx-bw/2, base-h, cx+bw/2, base), c)
		Text(img, cx-TextWidth(b.Text)/2, base-h-lineH, b.Text, black)
		for j, l := range wrap(b.Label, max(slot/charW-1, 4)) {
			Text(img, cx-TextWidth(l)/2, base+6+j*lineH, l, black)
		}
	}
	// frame
	fill(img, image.Rect(o.X+4, o.Y+panelH-4, o.X+panelW-4, o.Y+panelH-3), light)
}

// wrap splits s into lines of at most w characters at spaces.
func wrap(s string, w int) []string {
	var lines []string
	cur := ""
	for _, word := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(word) > w {
			lines = append(lines, cur)
			cur = word
			continue
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// TextWidth is the width in pixels of s.
func TextWidth(s string) int { return len([]rune(s)) * charW }

// Text writes s (upper-cased; unknown characters as '?') at x, y.
func Text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row, line := range g {
			for col, px := range line {
				if px == '#' {
					fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
				}
			}
		}
		x += charW
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}
